"""Training data: formats, refusal of bad rows, assistant-only labels, truncation, batching and the eval split.

Uses the real SmolLM2 tokenizer (and, for the packed-vs-padded check, the real 135M model on CPU).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lorastack.finetune.data import (
    NUM_TOKENS,
    IGNORE,
    ChatEncoder,
    DataConfig,
    DataError,
    PackedRowsCollator,
    PaddedCollator,
    count_tokens,
    data_fingerprint,
    load_examples,
    make_collator,
    template_fingerprint,
    to_conversation,
    validate,
)
from lorastack.templates import TOOLS_TEMPLATE

FIXTURE = Path(__file__).parents[1] / "data" / "tool_chat.jsonl"
TOOLS = TOOLS_TEMPLATE.read_text()
UNMARKED_TOOLS = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", TOOLS)
"""lorastack's template without its generation markers: the prefix method must find the same tokens."""

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(base_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model.path)


def write_jsonl(folder: Path, rows: list, name: str = "data.jsonl") -> Path:
    path = folder / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


PARIS_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def tool_conversation_row() -> dict:
    """System, user, a tool call, its result, an answer, and a second exchange."""
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", **PARIS_CALL}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
            {"role": "assistant", "content": "It is 21 C."},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": "You're welcome!"},
        ],
        "tools": [WEATHER],
    }  # fmt: skip


def labelled_runs(tokenizer, input_ids: list[int], labels: list[int]) -> tuple[list[str], list[str]]:
    """Decoded runs of labelled tokens and of unlabelled tokens, in order."""
    runs: dict[bool, list[str]] = {True: [], False: []}
    current: list[int] = []
    state = None
    for token, label in zip(input_ids + [None], labels + [None]):
        on = label is not None and label != IGNORE
        if token is None or (state is not None and on != state):
            runs[state].append(tokenizer.decode(current))
            current = []
        state = on
        if token is not None:
            assert label in (IGNORE, token), "a label is either ignored or the token itself"
            current.append(token)
    return runs[True], runs[False]


# --- formats ---------------------------------------------------------------------------------------------------


def test_formats_give_the_same_conversation():
    messages = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "content": '{"temp_c": 21}'},
            {"role": "assistant", "content": "It is 21 C."},
        ],
        "tools": [WEATHER],
    }  # fmt: skip
    sharegpt = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
            {"from": "observation", "value": '{"temp_c": 21}'},
            {"from": "gpt", "value": "It is 21 C."},
        ],
        "tools": json.dumps([WEATHER["function"]]),  # LLaMA-Factory: bare schemas, as JSON text
    }
    a = to_conversation(messages, "messages", "m:1")
    b = to_conversation(sharegpt, "sharegpt", "s:1")
    assert (a.messages, a.tools) == (b.messages, b.tools)
    assert a.messages[2] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    }

    alpaca = {
        "system": "Be brief.",
        "instruction": "Translate to French.",
        "input": "Good morning",
        "output": "Bonjour",
    }
    plain = {"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Translate to French.\n\nGood morning"},
                          {"role": "assistant", "content": "Bonjour"}]}  # fmt: skip
    assert to_conversation(alpaca, "alpaca", "a:1").messages == to_conversation(plain, "messages", "p:1").messages


def test_format_detected_from_first_row(tmp_path):
    rows = [{"instruction": "Say hi", "output": "Hi"}, {"instruction": "Say bye", "input": "", "output": "Bye"}]
    stats = validate(DataConfig(path=write_jsonl(tmp_path, rows)))
    assert (stats.format, stats.rows, stats.assistant_turns) == ("alpaca", 2, 2)
    stats = validate(DataConfig(path=FIXTURE))
    assert (stats.format, stats.rows, stats.rows_with_tools, stats.tool_calls) == ("messages", 8, 4, 5)


def test_json_list_file_locates_rows_by_line(tmp_path):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    path = tmp_path / "data.json"
    path.write_text("[\n" + json.dumps(good) + ",\n" + json.dumps(good) + ",\n\n  " + '{"messages": []}' + "\n]\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:5: the conversation is empty")):
        validate(DataConfig(path=path))
    path.write_text(json.dumps([good, good]))
    assert validate(DataConfig(path=path)).rows == 2


GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _msgs(*messages: dict) -> dict:
    return {"messages": list(messages)}


def _calling(arguments: str) -> dict:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": arguments}}]}  # fmt: skip


USER = {"role": "user", "content": "q"}
ANSWER = {"role": "assistant", "content": "a"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}  # fmt: skip

BAD_ROWS = [
    ('{"messages": [', "not valid JSON"),
    ("[1, 2]", "the row is a list, not a JSON object"),
    ({"conversations": [{"from": "human", "value": "q"}]}, "missing key 'messages'"),
    (_msgs(), "the conversation is empty"),
    (_msgs(USER, ANSWER, {"role": "bot", "content": "x"}), "message 3 has role 'bot'"),
    (_msgs({"role": "user", "content": 5}, ANSWER), "message 1 (user) content is a number, not a string"),
    (_msgs(USER), "no assistant message"),
    (_msgs(USER, {"role": "tool", "content": "42"}, ANSWER), "message 2 is a tool result, but no assistant tool call"),
    (_msgs(USER, _calling("{expr: 1}")), "arguments are not valid JSON"),
    (_msgs(USER, _calling("[1]")), "arguments are a list, not a JSON object"),
    (_msgs(USER, CALL, {"role": "tool", "tool_call_id": "c9", "content": "x"}), "answers tool_call_id 'c9'"),
    (_msgs(ANSWER), "must start with the user"),
    (_msgs(USER, {"role": "assistant", "content": ""}), "has no content and no tool calls"),
    ({**GOOD, "tools": [{"description": "no name"}]}, "tool 1 is not a function schema"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS, ids=[reason for _, reason in BAD_ROWS])
def test_bad_row_is_refused_with_file_line_and_reason(tmp_path, tokenizer, monkeypatch, bad, reason):
    """A bad row near the end fails before any row is tokenized, naming the file, the line and the problem."""
    path = write_jsonl(tmp_path, [GOOD] * 30 + ["", bad, GOOD])  # a blank line must not shift the count
    encoded = []
    monkeypatch.setattr(ChatEncoder, "encode", lambda self, c: encoded.append(c))
    for call in (lambda c: validate(c), lambda c: load_examples(c, tokenizer, TOOLS)):
        with pytest.raises(DataError) as caught:
            call(DataConfig(path=path))
        assert f"{path}:32: " in str(caught.value)
        assert reason in str(caught.value)
        assert caught.value.hint
    assert encoded == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}, "turn 2 is from 'bot'"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{oops"}]},
         "turn 2 (function_call) is not valid JSON"),
    ],
)  # fmt: skip
def test_bad_sharegpt_row(tmp_path, bad, reason):
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path = write_jsonl(tmp_path, [good, bad])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(reason)):
        validate(DataConfig(path=path))


def test_bad_alpaca_row_and_missing_file(tmp_path):
    path = write_jsonl(tmp_path, [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: missing key 'output'")):
        validate(DataConfig(path=path))
    with pytest.raises(DataError, match="does not exist"):
        validate(DataConfig(path=tmp_path / "nope.jsonl"))


# --- labels ------------------------------------------------------------------------------------------------------

EXPECTED_ASSISTANT = [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
    "It is 21 C.<|im_end|>",
    "You're welcome!<|im_end|>",
]


@pytest.mark.parametrize(
    ("template", "method"), [(TOOLS, "{% generation %} markers"), (UNMARKED_TOOLS, "prefix rendering")]
)
def test_labels_cover_exactly_the_assistant_tokens(tokenizer, template, method):
    encoder = ChatEncoder(tokenizer, template, max_length=1024)
    assert encoder.method == method
    encoded = encoder.encode(to_conversation(tool_conversation_row(), "messages", "row"))
    assert not encoded.truncated
    learned, context = labelled_runs(tokenizer, encoded.input_ids, encoded.labels)
    assert learned == EXPECTED_ASSISTANT
    context_text = "".join(context)
    not_learned = ("Be brief.", "# Tools", 'get_weather", "description', "Weather in Paris?", "Thanks",
                   '<tool_response>\n{"temp_c": 21}\n</tool_response>', "<|im_start|>assistant\n")  # fmt: skip
    for unlearned in not_learned:
        assert unlearned in context_text
        assert all(unlearned not in run for run in learned)


def test_prefix_method_matches_markers_token_for_token(tokenizer):
    conversation = to_conversation(tool_conversation_row(), "messages", "row")
    marked = ChatEncoder(tokenizer, TOOLS, 1024).encode(conversation)
    prefixed = ChatEncoder(tokenizer, UNMARKED_TOOLS, 1024).encode(conversation)
    assert (marked.input_ids, marked.labels) == (prefixed.input_ids, prefixed.labels)


def test_smollm2_own_template_by_prefixes(tokenizer):
    """SmolLM2's own template has no markers: prefixes find the turns; its default system prompt is not learned."""
    row = _msgs({"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "In French?"}, {"role": "assistant", "content": "Bonjour !"})  # fmt: skip
    encoder = ChatEncoder(tokenizer, tokenizer.chat_template, 1024)
    assert encoder.method == "prefix rendering"
    encoded = encoder.encode(to_conversation(row, "messages", "row"))
    learned, context = labelled_runs(tokenizer, encoded.input_ids, encoded.labels)
    assert learned == ["Hello!<|im_end|>", "Bonjour !<|im_end|>"]
    assert "You are a helpful AI assistant named SmolLM" in context[0]
    assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(row["messages"], tokenize=False)


def test_template_that_drops_tool_calls_is_refused(tokenizer, tmp_path):
    """SmolLM2's own template renders no tool calls: training on it would teach empty answers."""
    path = write_jsonl(tmp_path, [GOOD, tool_conversation_row()])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: the row has tool calls")) as caught:
        load_examples(DataConfig(path=path), tokenizer, None)  # None: the tokenizer's own template
    assert "chatml_tools.jinja" in caught.value.hint


def test_template_that_rewrites_history_is_refused(tokenizer):
    """A template that hides earlier assistant turns (as reasoning templates do) cannot be masked by prefixes."""
    hiding = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' and not loop.last %}(earlier answer){% else %}{{ m['content'] }}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    row = _msgs(USER, ANSWER, USER, ANSWER)
    with pytest.raises(DataError, match="renders earlier turns differently") as caught:
        ChatEncoder(tokenizer, hiding, 1024).encode(to_conversation(row, "messages", "x.jsonl:3"))
    assert "x.jsonl:3" in str(caught.value)
    assert "{% generation %}" in caught.value.hint


def test_system_prompt_added_only_where_missing(tokenizer, tmp_path):
    with_own = {"messages": [{"role": "system", "content": "Own prompt."}, USER, ANSWER]}
    path = write_jsonl(tmp_path, [_msgs(USER, ANSWER), with_own])
    train, _, _ = load_examples(DataConfig(path=path, eval_fraction=0, system_prompt="Be terse."), tokenizer, TOOLS)
    texts = [tokenizer.decode(ids) for ids in train["input_ids"]]
    assert texts[0].startswith("<|im_start|>system\nBe terse.<|im_end|>")
    assert texts[1].startswith("<|im_start|>system\nOwn prompt.<|im_end|>")


def test_truncation_keeps_max_length_and_drops_examples_without_labels(tokenizer, tmp_path):
    long_system = {"role": "system", "content": "word " * 200}
    rows = [
        {"messages": [long_system, USER, ANSWER]},  # the answer lies beyond max_length: dropped
        {"messages": [USER, {"role": "assistant", "content": "long answer " * 100}]},  # cut, still learned
        {"messages": [USER, ANSWER]},  # fits
    ]
    config = DataConfig(path=write_jsonl(tmp_path, rows), max_length=64, eval_fraction=0)
    train, held, report = load_examples(config, tokenizer, TOOLS)
    assert held is None
    assert (report.train_examples, report.dropped, report.truncated) == (2, 1, 2)
    lengths = [len(ids) for ids in train["input_ids"]]
    assert lengths[0] == 64 and lengths[1] < 64
    assert train.column_names == ["input_ids", "labels"]
    assert all(any(label != IGNORE for label in labels[1:]) for labels in train["labels"])
    assert report.tokens == sum(lengths)
    assert "1 dropped" in str(report)


# --- eval split ------------------------------------------------------------------------------------------------


def _numbered_rows(n: int) -> list[dict]:
    return [
        _msgs({"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."})
        for i in range(n)
    ]


def _split(tokenizer, path: Path, seed: int = 0) -> tuple[set, set]:
    train, held, _ = load_examples(DataConfig(path=path, eval_fraction=0.2), tokenizer, TOOLS, seed=seed)
    return {tuple(x) for x in train["input_ids"]}, {tuple(x) for x in held["input_ids"]}


def test_eval_split_is_deterministic_and_disjoint(tokenizer, tmp_path):
    rows = _numbered_rows(200)
    path = write_jsonl(tmp_path, rows)
    train, held = _split(tokenizer, path)
    assert not train & held
    assert len(train) + len(held) == 200
    assert 20 <= len(held) <= 60
    assert _split(tokenizer, path) == (train, held)
    # Content decides, not position: the shuffled file splits the same way.
    assert _split(tokenizer, write_jsonl(tmp_path, rows[::-1], "reversed.jsonl")) == (train, held)
    assert _split(tokenizer, path, seed=1) != (train, held)


def test_eval_path_is_the_eval_split_and_training_is_not_split(tokenizer, tmp_path):
    train_path = write_jsonl(tmp_path, _numbered_rows(40))
    eval_rows = [
        _msgs({"role": "user", "content": f"Held {i}?"}, {"role": "assistant", "content": f"Held answer {i}."})
        for i in range(3)
    ]
    eval_path = write_jsonl(tmp_path, eval_rows, "eval.jsonl")
    config = DataConfig(path=train_path, eval_path=eval_path, eval_fraction=0.5)
    assert config.eval_fraction == 0  # the file is the eval split: a share of the training rows is not
    train, held, report = load_examples(config, tokenizer, TOOLS)
    assert len(train) == 40 and report.train_examples == 40 and report.eval_examples == 3
    assert "eval.jsonl" in str(report) and validate(config).rows == 40
    alone, _, _ = load_examples(DataConfig(path=eval_path, eval_fraction=0), tokenizer, TOOLS)
    assert held["input_ids"] == alone["input_ids"]  # exactly that file's examples, in order

    eval_path.write_text(eval_path.read_text() + '{"messages": 3}\n')  # a bad eval row: refused by its file:line
    for check in (lambda: validate(config), lambda: load_examples(config, tokenizer, TOOLS)):
        with pytest.raises(DataError, match=f"{re.escape(str(eval_path))}:4"):
            check()
    with pytest.raises(DataError, match="data.eval_path"):
        validate(DataConfig(path=train_path, eval_path=tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="data.eval_path"):
        DataConfig(path=train_path, eval_path=tmp_path / "eval.csv")


# --- batching --------------------------------------------------------------------------------------------------


def test_collators_and_token_count(tokenizer):
    features = [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE, 9]}]
    padded = PaddedCollator(pad_token_id=2)(features)
    assert padded["input_ids"].tolist() == [[5, 6, 7], [8, 9, 2]]
    assert padded["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert PaddedCollator(2, pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)

    config = DataConfig(path=FIXTURE)
    flat_collator, why = make_collator(config, tokenizer, "sdpa")
    assert isinstance(flat_collator, PackedRowsCollator) and "padding-free" in why and "longest" in why
    three = [*features, {"input_ids": [4], "labels": [4]}]
    flat = flat_collator(three)  # rows as long as the longest example: [5, 6, 7] and [8, 9] + [4]
    assert flat["input_ids"].tolist() == [[5, 6, 7], [8, 9, 4]]
    assert flat["position_ids"].tolist() == [[0, 1, 2], [0, 1, 0]]
    assert flat["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert "attention_mask" not in flat  # transformers builds the packed mask only without one
    assert count_tokens(padded) == 5 and count_tokens(flat) == 6
    assert count_tokens({"input_ids": padded["input_ids"], "attention_mask": padded["attention_mask"]}) == 5

    for attn, packing in (("eager", True), (None, True), ("sdpa", False)):
        collator, why = make_collator(config.model_copy(update={"packing": packing}), tokenizer, attn)
        assert isinstance(collator, PaddedCollator) and "padded" in why
    flash, why = make_collator(config, tokenizer, "flash_attention_2")
    assert "padding-free" in why
    one_row = flash(features)
    assert one_row["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and count_tokens(one_row) == 5
    assert one_row["cu_seq_lens_q"].tolist() == [0, 3, 5]


def test_packed_rows_are_capped_and_padded_as_their_own_sequence():
    def example(n, first):
        return {"input_ids": list(range(first, first + n)), "labels": [IGNORE] + list(range(first + 1, first + n))}

    features = [example(3, 10), example(6, 20), example(2, 30), example(4, 40), example(9, 50)]
    collator = PackedRowsCollator(pad_token_id=0, row_tokens=8)
    # Longest first into the first row with room; the 9-token example (over the cap) gets a row of its own.
    assert collator.rows([3, 6, 2, 4, 9]) == [[4], [1, 2], [3, 0]]
    batch = collator(features)
    assert batch["input_ids"].shape == (3, 9) and count_tokens(batch) == 24
    assert batch["input_ids"][1].tolist() == [*range(20, 26), 30, 31, 0]
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0]  # the pad restarts too
    assert batch["labels"][1].tolist() == [IGNORE, *range(21, 26), IGNORE, 31, IGNORE]
    assert batch["position_ids"][2].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1]
    # Every real token is there once, with its label, whatever row it went to.
    real = batch["position_ids"].new_tensor([[1] * 9, [1] * 8 + [0], [1] * 7 + [0, 0]]).bool()
    assert sorted(batch["input_ids"][real].tolist()) == sorted(t for f in features for t in f["input_ids"])
    assert (batch["labels"][~real] == IGNORE).all()
    assert PackedRowsCollator(0, 8, pad_to_multiple_of=4)(features)["input_ids"].shape == (3, 12)


@pytest.fixture(scope="module")
def smollm2(base_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model.path, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    return model.train()  # as in training (SmolLM2 has no dropout, so outputs are deterministic)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_batch_gives_the_padded_loss(smollm2, tokenizer, attn):
    """Padding-free batches must train the same as padded ones: per example and in the model's own loss, with
    two examples in one row and a row that ends in padding.

    Run as transformers' Trainer runs the model: use_cache off. (With SmolLM2's config default use_cache=True,
    transformers 5.17 skips the packed-sequence mask and the examples attend to each other.)
    """
    train, _, _ = load_examples(DataConfig(path=FIXTURE, eval_fraction=0), tokenizer, TOOLS)
    features = [train[i] for i in (2, 0, 5)]  # a tool conversation, a short and a two-turn one
    model = smollm2
    model.set_attn_implementation(attn)
    assert model.config._attn_implementation == attn

    padded = PaddedCollator(tokenizer.pad_token_id)(features)
    collator = PackedRowsCollator(tokenizer.pad_token_id, 4096)
    rows = collator.rows([len(f["input_ids"]) for f in features])
    assert rows == [[0], [2, 1]], [len(f["input_ids"]) for f in features]  # 277 tokens; 55 + 41 and padding
    packed = collator(features)
    with torch.no_grad():
        out_padded = model(**{k: v for k, v in padded.items() if k != NUM_TOKENS})
        out_packed = model(**{k: v for k, v in packed.items() if k != NUM_TOKENS})

    def per_token(logits, labels):
        return torch.nn.functional.cross_entropy(logits[:-1], labels[1:], reduction="none", ignore_index=IGNORE)

    for r, row in enumerate(rows):
        start = 0
        for i in row:
            n, labels = len(features[i]["input_ids"]), padded["labels"][i]
            a = per_token(out_padded.logits[i, :n], labels[:n])
            b = per_token(out_packed.logits[r, start : start + n], packed["labels"][r, start : start + n])
            learned = labels[1:n] != IGNORE
            assert torch.allclose(a[learned].mean(), b[learned].mean(), rtol=1e-3), f"example {i}"
            start += n
    assert torch.allclose(out_padded.loss, out_packed.loss, rtol=1e-3)
    assert count_tokens(padded) == count_tokens(packed) == sum(len(f["input_ids"]) for f in features)


# --- sources, streaming, fingerprints, config --------------------------------------------------------------------


def test_streaming_yields_the_same_examples(tokenizer, tmp_path):
    built, _, _ = load_examples(DataConfig(path=FIXTURE, eval_fraction=0), tokenizer, TOOLS)
    expected = [(x["input_ids"], x["labels"]) for x in built]
    local, held, report = load_examples(DataConfig(path=FIXTURE, eval_fraction=0, streaming=True), tokenizer, TOOLS)
    assert held is None and report.streaming and report.rows == 8
    assert [(x["input_ids"], x["labels"]) for x in local] == expected
    # The datasets.load_dataset path (what a hub dataset takes), on a local file through the json builder.
    config = DataConfig(dataset="json", data_files=[str(FIXTURE)], streaming=True, eval_fraction=0)
    hub, _, _ = load_examples(config, tokenizer, TOOLS)
    assert [(x["input_ids"], x["labels"]) for x in hub] == expected


def test_streamed_hub_rows_are_checked_as_read(tokenizer, tmp_path, monkeypatch):
    """A streamed hub dataset is checked up front only in part; a later bad row stops training where it is."""
    monkeypatch.setattr("lorastack.finetune.data.sources.STREAM_CHECK_ROWS", 3)
    path = write_jsonl(tmp_path, [GOOD] * 4 + [_msgs(USER)])
    config = DataConfig(dataset="json", data_files=[str(path)], streaming=True, eval_fraction=0)
    stats = validate(config)
    assert (stats.rows, stats.complete) == (3, False)
    assert "first 3 conversations" in str(stats)
    train, _, _ = load_examples(config, tokenizer, TOOLS)
    with pytest.raises(DataError, match=re.escape("json[train] row 4: the conversation has no assistant message")):
        list(train)


def test_builder_dataset_rows_are_located(tokenizer, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    path = write_jsonl(tmp_path, [GOOD, _msgs(USER), GOOD])
    config = DataConfig(dataset="json", data_files=[str(path)])
    with pytest.raises(DataError, match=re.escape("json[train] row 1: the conversation has no assistant message")):
        validate(config)


def test_fingerprints(tmp_path):
    path = write_jsonl(tmp_path, [GOOD])
    first = data_fingerprint(DataConfig(path=path))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert data_fingerprint(DataConfig(path=path)) == first
    path.write_text(path.read_text().replace("hello", "hallo"))
    assert data_fingerprint(DataConfig(path=path)) != first
    assert data_fingerprint(DataConfig(dataset="json", data_files=[str(path)])) != data_fingerprint(
        DataConfig(path=path)
    )
    assert template_fingerprint(TOOLS) != template_fingerprint(UNMARKED_TOOLS)
    assert template_fingerprint(TOOLS) == template_fingerprint(TOOLS_TEMPLATE.read_text())


def test_config_checks_and_help():
    with pytest.raises(ValueError, match="exactly one of data.path"):
        DataConfig()
    with pytest.raises(ValueError, match="exactly one of data.path"):
        DataConfig(path=Path("a.jsonl"), dataset="org/set")
    with pytest.raises(ValueError, match="must be a .jsonl or .json file"):
        DataConfig(path=Path("a.parquet"))
    with pytest.raises(ValueError, match="extra"):
        DataConfig(path=Path("a.jsonl"), pack=True)
    with pytest.raises(ValueError, match="streamed data has none"):
        DataConfig(dataset="org/set", streaming=True, group_by_length=True)
    assert all(field.description for field in DataConfig.model_fields.values())


@pytest.mark.parametrize("grouped", [False, True])
def test_group_by_length_gives_batches_with_little_padding(tmp_path, one_chat, grouped):
    """Through the Trainer's own data loader, with the arguments a run uses: lengths like the tool-use chats'."""
    import random

    from transformers import Trainer

    from lorastack.finetune.choices import RunChoices
    from lorastack.finetune.config import load_train_config
    from lorastack.finetune.trainer import _training_arguments

    data = one_chat
    config = load_train_config(None, [f"data.path={data}", f"data.group_by_length={grouped}", "training.batch_size=4",
                                      f"output_dir={tmp_path / 'run'}"])
    choices = RunChoices("cpu", "none", "float32", "adamw_torch", False, "test")
    rng = random.Random(0)
    rows = [{"input_ids": [0] * rng.randint(600, 1000)} for _ in range(400)]
    trainer = Trainer(model=torch.nn.Linear(1, 1), args=_training_arguments(config, choices, has_eval=False),
                      train_dataset=rows, data_collator=lambda batch: [len(f["input_ids"]) for f in batch])
    batches = list(trainer.get_train_dataloader())
    assert sorted(n for b in batches for n in b) == sorted(len(r["input_ids"]) for r in rows)  # each row once
    padding = 1 - sum(map(sum, batches)) / sum(len(b) * max(b) for b in batches)
    assert (padding < 0.02) if grouped else (padding > 0.1)
