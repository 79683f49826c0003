"""Real training steps on the embedded model on the CPU: what trains, what stays frozen, resume, merge."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lorastack

from lorastack.finetune.config import load_train_config
from lorastack.finetune.export import export_merged
from lorastack.finetune.trainer import train
from lorastack.errors import LorastackError
from lorastack.serve.compatibility import check_compatible, inspect_adapter
from lorastack.serve.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "tool_chat.jsonl"
GRPO_DATA = ROOT / "tests" / "data" / "grpo_tools.jsonl"  # two plain questions that tools-demo v1 sometimes sends
# to a tool, and a calculator problem
TINY = [
    f"data.path={DATA}", "data.max_length=384", "data.eval_fraction=0",
    "lora.r=4", "lora.target_modules=[q_proj, v_proj]",
    "training.batch_size=2", "training.learning_rate=3e-3", "training.logging_steps=1", "training.lr_scheduler=constant",
]  # fmt: skip


def tiny_config(out: Path, *extra: str):
    return load_train_config(None, [*TINY, f"output_dir={out}", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_model):
    out = tmp_path_factory.mktemp("run")
    return train(tiny_config(out, "training.max_steps=8"))


def test_base_frozen_adapter_moved_loss_down(trained, base_model) -> None:
    model = trained.model
    base_weights = load_file(Path(base_model.path) / "model.safetensors")
    lora_b = []
    for name, param in model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad, name
            if "lora_B" in name:
                lora_b.append(param)
        else:
            assert not param.requires_grad, name
    # Frozen means unchanged: compare a trained-through layer with the weights on disk.
    q = model.base_model.model.model.layers[3].self_attn.q_proj.base_layer.weight
    assert torch.equal(q.detach().to(base_weights["model.layers.3.self_attn.q_proj.weight"].dtype),
                       base_weights["model.layers.3.self_attn.q_proj.weight"])  # fmt: skip
    assert all(b.abs().sum() > 0 for b in lora_b)  # B starts at zero: any non-zero value was learned
    losses = [h["loss"] for h in trained.log_history if "loss" in h]
    assert len(losses) == 8 and sum(losses[-3:]) < sum(losses[:3])


def test_token_count_is_the_trained_tokens_only(tmp_path: Path, base_model) -> None:
    """Eval batches and the batch fetched ahead go through the same collator; only trained ones count."""
    from transformers import AutoTokenizer

    from lorastack.finetune.data import load_examples
    from lorastack.finetune.trainer import chat_template_for

    extra = ("data.eval_fraction=0.25", "training.epochs=1", "training.eval_steps=1")
    config = tiny_config(tmp_path / "run", *extra)
    result = train(config)

    tokenizer = AutoTokenizer.from_pretrained(base_model.path)
    template = chat_template_for(config, base_model)
    train_set, eval_set, _ = load_examples(config.data, tokenizer, template, seed=config.training.seed)
    assert len(eval_set) > 0
    assert result.metrics["non_padding_tokens"] == sum(len(row["input_ids"]) for row in train_set)


def test_output_is_a_registrable_adapter_with_card(trained, base_model, base_shapes) -> None:
    adapter = trained.adapter_dir
    assert {"adapter_config.json", "adapter_model.safetensors", "training_card.json", "README.md"} <= {
        p.name for p in adapter.iterdir()
    }
    assert (adapter.parent / "loss_curve.png").stat().st_size > 1000
    check_compatible(inspect_adapter(adapter), base_model, base_shapes)
    registered = Registry().register("trained", adapter, base_model, base_shapes)
    training = registered.card["training"]
    assert training["base_model"] == base_model.name and training["metrics"]["steps"] == 8
    assert len(training["data_sha256"]) == 64 and len(training["chat_template_sha256"]) == 64
    # What auto resolved to on this machine, for reproducing the run's memory and speed.
    choices = trained.choices
    assert (training["backend"], training["attention"], training["offload_activations"]) == (
        choices.backend, choices.attention, choices.offload_activations)
    if choices.backend == "cpu":
        assert (training["attention"], training["gradient_checkpointing"]) == ("sdpa", False)


def test_merge_gives_the_adapted_model(trained, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    merged_dir = export_merged(str(trained.adapter_dir), tmp_path / "merged")
    card = json.loads((merged_dir / "training_card.json").read_text())  # the training card goes along
    assert card["metrics"]["steps"] == 8 and "merged" in card and (merged_dir / "README.md").is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314]])
    trained.model.eval()
    with torch.no_grad():
        expected = trained.model(input_ids=ids).logits
        actual = merged(input_ids=ids).logits
    assert (expected - actual).abs().max() < 1e-3
    with pytest.raises(LorastackError, match="is not empty"):
        export_merged(str(trained.adapter_dir), merged_dir)


def test_malformed_row_names_file_and_line_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(DATA.read_text().splitlines()[0] + "\n" + '{"messages": [{"role": "bot", "content": "hi"}]}\n')
    out = tmp_path / "run"
    with pytest.raises(LorastackError, match=r"bad\.jsonl:2"):
        train(tiny_config(out, f"data.path={bad}", "training.max_steps=1"))
    assert not out.exists()


def test_existing_run_is_not_overwritten(trained) -> None:
    config = tiny_config(trained.adapter_dir.parent, "training.max_steps=8", "training.save_steps=4")
    (trained.adapter_dir.parent / "checkpoints" / "checkpoint-4").mkdir(parents=True, exist_ok=True)
    (trained.adapter_dir.parent / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(LorastackError, match="already holds checkpoints"):
        train(config)


def test_a_run_folder_in_use_is_refused(tmp_path: Path) -> None:
    """A second run into the folder that a run is training into (or a --resume while it trains) is refused before
    the model loads; once the first lets go, a run trains there and lets go of the folder when it returns."""
    out = tmp_path / "run"
    out.mkdir()
    first = os.open(out, os.O_RDONLY)
    fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the first run's process holds it
    try:
        with pytest.raises(LorastackError, match="in use: another training run is writing to it"):
            train(tiny_config(out, "training.max_steps=1"))
    finally:
        os.close(first)
    assert list(out.iterdir()) == []
    train(tiny_config(out, "training.max_steps=1"))
    again = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the finished run still held it
    finally:
        os.close(again)


def test_a_run_too_big_for_the_memory_is_refused_before_its_first_step(tmp_path: Path, monkeypatch) -> None:
    """This machine's RAM, as the check reads it, made 3 GiB: 8 packed sequences of 384 tokens (about 5.4 GiB
    planned) are refused before any step, with a batch size that fits; the run trains with it."""
    from lorastack.finetune import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "host_memory_bytes", lambda: 3 * 2**30)
    out = tmp_path / "run"
    with pytest.raises(LorastackError, match="this machine's RAM holds 3.0 GiB") as refused:
        train(tiny_config(out, "training.max_steps=1", "training.batch_size=8", "data.packing=true"))
    assert not (out / "checkpoints").exists() and not (out / "adapter").exists()
    fix = re.search(r"What fits: (training\.batch_size=\d+ training\.grad_accum=\d+)", str(refused.value)).group(1)
    result = train(tiny_config(out, "training.max_steps=1", "training.batch_size=8", "data.packing=true", *fix.split()))
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_start_adapter_that_does_not_fit_the_base_is_refused_in_one_line(tmp_path: Path) -> None:
    import shutil

    start = tmp_path / "start"
    shutil.copytree(Path(lorastack.__file__).parent / "adapters" / "tools-demo", start)
    settings = json.loads((start / "adapter_config.json").read_text())
    (start / "adapter_config.json").write_text(json.dumps({**settings, "target_modules": ["c_attn", "c_proj"]}))
    with pytest.raises(LorastackError, match="names target_modules that SmolLM2-135M-Instruct lacks: c_attn, c_proj"):
        train(tiny_config(tmp_path / "run", "training.max_steps=1", f"lora.init_from={start}"))
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_out_of_memory_mid_run_is_one_line_with_the_fix(tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class OutOfMemoryAtStep2(TrainerCallback):  # what CUDA raises when a batch does not fit
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0)\nmore detail")

    with pytest.raises(LorastackError, match=r"Out of memory at step 2: CUDA out of memory\. Tried to allocate 2\.00 "
                       r"GiB \(GPU 0\) Lower training\.batch_size"):  # fmt: skip
        train(tiny_config(tmp_path / "run", "training.max_steps=3"), callbacks=[OutOfMemoryAtStep2()])


def test_grpo_from_the_shipped_adapter_samples_rewards_and_learns(tmp_path: Path) -> None:
    """method grpo (TRL's GRPOTrainer, on the CPU with torch log-probabilities) from the shipped tools-demo adapter:
    replies are sampled for the data's prompts and rewarded, the weights move where a group's rewards differ, and
    the adapter lands with its card as a supervised one does."""
    start = Path(lorastack.__file__).parent / "adapters" / "tools-demo"
    out = tmp_path / "grpo"
    result = train(load_train_config(None, [
        f"data.path={GRPO_DATA}", "data.max_length=1024", "method=grpo", f"lora.init_from={start}",
        "training.batch_size=8", "grpo.generations=8", "grpo.max_completion_tokens=32", "training.max_steps=2",
        "training.logging_steps=1", "training.lr_scheduler=constant", "training.warmup_ratio=0",
        "training.learning_rate=1e-3", f"output_dir={out}", "lora.r=4",  # the start's shape wins: r=16
    ]))  # fmt: skip
    steps = [h for h in result.log_history if "reward" in h]
    assert len(steps) == 2 and all(0 <= h["reward"] <= 1 for h in steps)
    assert all(h["completions/mean_length"] > 0 for h in steps)
    card = json.loads((out / "adapter" / "training_card.json").read_text())
    assert card["config"]["method"] == "grpo" and card["config"]["lora"]["init_from"] == str(start)
    assert card["metrics"]["first_reward"] == pytest.approx(steps[0]["reward"], abs=1e-4)
    assert "non_padding_tokens" not in card["metrics"]
    assert card["lora"]["r"] == 16 and "- LoRA: r=16," in (out / "adapter" / "README.md").read_text()
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "SmolLM2-135M-Instruct"  # registers anywhere, as the start does
    before, after = load_file(start / "adapter_model.safetensors"), load_file(out / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    moved = max((after[k].float() - before[k].float()).abs().max().item() for k in before)
    if any(h["frac_reward_zero_std"] < 1 for h in steps):  # some group had a right and a wrong reply to learn from
        assert moved > 1e-4
    else:
        assert moved == 0  # no reward differed: no advantage, no gradient, the start's weights exactly


def test_interrupt_then_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) ends with exit 130 and the command to resume, no traceback; a run piped to a file shows a
    progress line per logging step and no raw dicts; --resume continues from the checkpoint."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "lorastack.cli", "train", *TINY, f"output_dir={out}", "training.max_steps=6",
            "training.save_steps=2"]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    # SIGINT as a terminal's Ctrl-C: its default action restored in the child, which would otherwise inherit an
    # "ignore" from a test run started in the background (there the run ignored the signal and ended with 0).
    first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, COLUMNS="200"),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert first.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint finish writing
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=120) == 130
    assert not (out / "adapter").exists()
    first_log = (tmp_path / "first.log").read_text()
    assert "Traceback" not in first_log and "{'loss'" not in first_log, first_log[-2000:]
    assert first_log.strip().splitlines()[-1].endswith(" training.save_steps=2 --resume"), first_log[-2000:]
    assert "Continue with: lorastack train " in first_log and "step 2/6  loss " in first_log

    again = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, COLUMNS="200"))  # fmt: skip

    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming from checkpoint-" in again.stderr  # progress lines go to stderr (lorastack.report)
    assert "step 6/6  loss " in again.stderr and "{'" not in again.stdout + again.stderr
    card = json.loads((out / "adapter" / "training_card.json").read_text())
    assert card["metrics"]["steps"] == 6


def test_every_shipped_recipe_loads() -> None:
    recipes = sorted((ROOT / "finetune" / "recipes").rglob("*.yaml")) + sorted((ROOT / "benchmarks").rglob("*.yaml"))
    assert len(recipes) >= 3
    for recipe in recipes:
        assert load_train_config(recipe).lora.r >= 1, recipe


def test_bad_override_and_unknown_field() -> None:
    with pytest.raises(LorastackError, match="is not KEY=VALUE"):
        load_train_config(None, ["lora.r"])
    with pytest.raises(LorastackError, match="lora.rank: Extra inputs are not permitted"):
        load_train_config(None, [f"data.path={DATA}", "lora.rank=8"])


def _random_llama(folder: Path) -> Path:
    """A small random-init Llama with the embedded model's tokenizer (LORASTACK_TEST_TOKENIZER elsewhere)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = os.environ.get("LORASTACK_TEST_TOKENIZER")
    if source is None:
        from lorastack.models import resolve_base_model

        source = resolve_base_model(None).path
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=2048)  # fmt: skip
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("backend", "quantization", "extra"),
    [("unsloth", "nf4", ()), ("peft", "nf4", ()), ("peft", "none", ()),
     ("peft", "nf4", ("training.offload_activations=off",))],
)
def test_cuda_backends_train(tmp_path: Path, backend: str, quantization: str, extra: tuple[str, ...]) -> None:
    """On a CUDA GPU: a few QLoRA/LoRA steps with each GPU backend (QLoRA offloads layer inputs by default, and
    once with that off); the adapter passes the compatibility check."""
    if backend == "unsloth":
        pytest.importorskip("unsloth")
    model = _random_llama(tmp_path / "model")
    config = tiny_config(
        tmp_path / "run", f"base_model={model}", f"backend={backend}", f"quantization={quantization}",
        f"data.chat_template={ROOT / 'lorastack' / 'templates' / 'chatml_tools.jinja'}", "training.max_steps=3", *extra,
    )  # fmt: skip
    result = train(config)
    assert result.choices.backend == backend and result.choices.quantization == quantization
    assert result.metrics["peak_gpu_memory_gib"] > 0 and result.metrics["steps"] == 3
    # Unsloth always offloads; peft does by default for quantized runs.
    assert result.choices.offload_activations == (quantization == "nf4" and not extra)
    inspect_adapter(result.adapter_dir)
