"""method grpo's parts: what a sampled reply does and what it earns, the CPU log-probabilities, the settings."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from lorastack.errors import LorastackError
from lorastack.finetune.choices import Machine, resolve
from lorastack.finetune.config import load_train_config
from lorastack.finetune.grpo import TorchLogProbs, decision_reward, parse_decision, tool_decision

GPU = Machine(cuda=True, bf16=True, bitsandbytes=True, probed=True)


def call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def calc(expression: str) -> list:
    return [["calculator", {"expression": expression}]]


def test_a_reply_parses_to_its_calls_or_to_nothing() -> None:
    assert parse_decision("Paris.").calls == ()
    plan = "Floor: 19 * 19 square metres, times 24.5.\n" + call("calculator", expression="19 * 19 * 24.5")
    assert parse_decision(plan).calls == (("calculator", {"expression": "19 * 19 * 24.5"}),)
    assert parse_decision(call("a", x=1) + call("b")).calls == (("a", {"x": 1}), ("b", {}))


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": }\n</tool_call>',  # not JSON
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2"}}',  # never closed
    '<tool_call>["calculator"]</tool_call>',  # not an object
    '<tool_call>{"arguments": {}}</tool_call>',  # no name
    '<tool_call>{"name": "a", "arguments": [1]}</tool_call>',  # arguments not an object
    # As the server's parser (vLLM's hermes) reads them, these are not calls either:
    '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call>',  # arguments as a string: passed on as text
    '<tool_call>{"name": "a"}</tool_call>',  # no arguments
    call("calculator", expression="2*3") + '<tool_call>{"name": "calculator", "arguments": {"expr',  # cut off
    '<tool_call>{"name": "a", "arguments": {"x": ' + "[" * 5000 + "</tool_call>",  # too deep for json
    '<tool_call>{"name": "a", "arguments": {"x": ' + "9" * 5000 + "}}</tool_call>",  # too long for int()
])  # fmt: skip
def test_a_broken_call_does_not_parse(text: str) -> None:
    assert parse_decision(text).calls is None


def test_arguments_are_compared_as_a_client_reads_them() -> None:
    want = [["f", {"x": True, "n": 1, "tags": ["a", "b"]}]]
    replies = [
        call("f", x=True, n=1.0, tags=["a", "b"]),  # 1 and 1.0 are one JSON number
        call("f", x=1, n=1, tags=["a", "b"]),  # 1 is not true
        call("f", x=True, n=1, tags=["b", "a"]),  # an array's order counts
    ]
    assert decision_reward(replies, [want] * 3) == [1.0, 0.0, 0.0]
    big = calc("2**2000")  # too big for a float: compared exactly
    assert decision_reward([call("calculator", expression="2**2000"), call("calculator", expression="2**2001")],
                           [big, big]) == [1.0, 0.0]  # fmt: skip


def test_the_calculator_is_judged_by_the_value_of_its_expression() -> None:
    want = calc("19 * 19 * 24.5")
    replies = [
        call("calculator", expression="24.5 * 19 * 19"),  # the same value, another order
        call("calculator", expression="19 * 19 + 24.5"),  # the wrong step (the issue's example)
        call("calculator", expression="19 * 19 * 24.5 + x"),  # not an expression the calculator takes
        call("calculator", expression=8844.5),  # not a string
        call("search", query="19 * 19 * 24.5"),  # the wrong tool
        "It costs 8844.5 dollars.",  # no call where one was due
        call("calculator", expression="19*19*24.5") + call("calculator", expression="1"),  # one call too many
    ]
    assert decision_reward(replies, [want] * len(replies)) == [1.0, 0, 0, 0, 0, 0, 0]


def test_search_is_judged_by_the_tool_and_other_functions_by_their_arguments() -> None:
    search = [["search", {"query": "founder of Kalmuth"}]]
    weather = [["get_weather", {"city": "Paris", "unit": "celsius"}]]
    replies = [call("search", query="who founded Kalmuth"), call("search", query="  "),
               call("get_weather", unit="celsius", city="Paris"), call("get_weather", city="Paris")]  # fmt: skip
    assert decision_reward(replies, [search, search, weather, weather]) == [1.0, 0, 1.0, 0]


def test_no_call_is_right_where_the_data_calls_none() -> None:
    assert decision_reward(["Canberra.", call("search", query="capital of Australia")], [[], []]) == [1.0, 0]


def test_trl_gets_the_reference_as_a_json_column_and_conversational_completions() -> None:
    completions = [[{"role": "assistant", "content": call("calculator", expression="2 * 3")}]]
    assert tool_decision(completions, reference=[json.dumps(calc("6"))], prompts=["..."]) == [1.0]


def test_the_cpu_log_probabilities_match_the_log_softmax_and_carry_gradients() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    targets = torch.tensor([0, 3, 10, 7, 3])
    outputs = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    log_probs, entropy, sq, mean, top1 = TorchLogProbs.apply(hidden, weight, None, targets, 0.7, 4, None, 1.0, outputs)
    logits = hidden @ weight.t() / 0.7
    reference = torch.log_softmax(logits, -1)
    assert torch.allclose(log_probs, reference.gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy, -(reference.exp() * reference).sum(-1), atol=1e-5)
    assert torch.allclose(sq, torch.log((reference.exp() ** 2).sum(-1)), atol=1e-5)
    assert torch.allclose(mean, logits.mean(-1), atol=1e-5)
    assert torch.equal(top1, logits.argmax(-1) == targets)
    log_probs.sum().backward()
    assert hidden.grad is not None and weight.grad.abs().sum() > 0
    only = TorchLogProbs.apply(hidden, weight, None, targets, 1.0, 4, None, 1.0, ())
    assert only[1:] == (None, None, None, None)


def test_grpo_settings_are_checked_with_the_config(one_chat, tmp_path) -> None:
    with pytest.raises(LorastackError, match=r"batch_size \(6\) counts sampled replies.*multiple of grpo.generations"):
        load_train_config(None, [f"data.path={one_chat}", "method=grpo", "training.batch_size=6"])
    with pytest.raises(LorastackError, match="method grpo and lora.init_from train with the peft backend"):
        load_train_config(None, [f"data.path={one_chat}", "method=grpo", "training.batch_size=8", "backend=unsloth"])
    config = load_train_config(None, [f"data.path={one_chat}", f"lora.init_from={tmp_path}"])  # checked at the start
    with pytest.raises(LorastackError, match=f"lora.init_from: {tmp_path} holds no adapter_config.json"):
        config.lora.check_init_from()
    (tmp_path / "adapter_config.json").write_text("{}")
    config.lora.check_init_from()
    for bad in ("grpo.beta=.inf", "grpo.temperature=.nan", "grpo.temperature=1e9", "grpo.max_completion_tokens=1e7"):
        with pytest.raises(LorastackError, match=bad.split("=")[0].replace(".", r"\.")):
            load_train_config(None, [f"data.path={one_chat}", "method=grpo", "training.batch_size=8", bad])


def test_grpo_and_a_start_from_an_adapter_choose_peft_over_unsloth(one_chat, tmp_path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    unsloth = dataclasses.replace(GPU, unsloth=True)
    for setting in ("method=grpo", f"lora.init_from={tmp_path}"):
        config = load_train_config(None, [f"data.path={one_chat}", setting, "training.batch_size=8"])
        choices = resolve(config, unsloth)
        assert choices.backend == "peft" and ("GRPO" in choices.reason or "init_from" in choices.reason)
    sft = resolve(load_train_config(None, [f"data.path={one_chat}"]), unsloth)
    assert sft.backend == "unsloth"
    with pytest.raises(LorastackError, match="method grpo trains in one process; 2 were asked for"):
        resolve(load_train_config(None, [f"data.path={one_chat}", "method=grpo", "training.batch_size=8"]), GPU, 2)
