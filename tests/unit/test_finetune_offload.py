"""Checkpointing with offloaded layer inputs trains exactly as plain checkpointing: same loss, same LoRA
gradients, dropout included (the recomputation replays the forward's random numbers)."""

from __future__ import annotations

import pytest
import torch

from lorastack.finetune import offload


def _lora_llama(dropout: float):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=97, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    model.config.use_cache = False
    for param in model.parameters():
        param.requires_grad_(False)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", init_lora_weights=False)
    return model, lora, get_peft_model


def _step(checkpointing: str, dropout: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model, lora, get_peft_model = _lora_llama(dropout)
    if checkpointing == "offloaded":
        offload.enable(model)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, lora).train()
    # Drawn on the CPU (a CPU generator), then moved to wherever the model is: the same ids on either device.
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1), device="cpu")
    ids = ids.to(next(model.parameters()).device)
    torch.manual_seed(7)  # the same dropout masks for both runs
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_offloaded_checkpointing_gives_the_same_gradients(dropout):
    loss, grads = _step("plain", dropout)
    offloaded_loss, offloaded_grads = _step("offloaded", dropout)
    assert torch.allclose(loss, offloaded_loss)
    assert len(grads) == 3 * 7 * 2 and all(g is not None for g in offloaded_grads)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, offloaded_grads))


def test_layers_use_the_offloaded_function():
    model, _, _ = _lora_llama(0.0)
    offload.enable(model)
    layers = model.model.layers
    assert all(layer.gradient_checkpointing and layer._gradient_checkpointing_func is offload.offloaded_checkpoint
               for layer in layers)


def test_offload_is_resolved_per_backend(one_chat):
    from lorastack.errors import LorastackError
    from lorastack.finetune.choices import Machine, resolve
    from lorastack.finetune.config import load_train_config

    data = one_chat
    cpu, gpu = Machine(cuda=False), Machine(cuda=True, bf16=True)

    def offloaded(machine, *overrides):
        config = load_train_config(None, [f"data.path={data}", "quantization=none", *overrides])
        return resolve(config, machine).offload_activations

    assert offloaded(cpu, "training.offload_activations=true") is False  # CPU: nowhere to offload to
    assert offloaded(gpu, "backend=peft", "training.offload_activations=true") is True
    assert offloaded(gpu, "backend=peft") is False  # auto: bf16 LoRA keeps its layer inputs on the GPU
    gpu = Machine(cuda=True, bf16=True, bitsandbytes=True)  # for nf4
    assert offloaded(gpu, "backend=peft", "quantization=nf4") is True  # auto: QLoRA offloads
    assert offloaded(gpu, "backend=peft", "quantization=nf4", "training.offload_activations=off") is False
    assert offloaded(gpu, "backend=peft", "quantization=nf4", "training.gradient_checkpointing=off") is False
    with pytest.raises(LorastackError, match="checkpointing is off"):
        offloaded(gpu, "backend=peft", "training.offload_activations=true", "training.gradient_checkpointing=off")


def test_the_planner_offloads_as_the_trainer_does(one_chat):
    from lorastack.finetune.choices import Machine, resolve
    from lorastack.finetune.config import load_train_config
    from lorastack.finetune.memory_plan import planned_run

    data = one_chat
    gpu = Machine.cuda_gpu(unsloth=False)
    for quantization in ("nf4", "int8", "none"):
        for setting in ("auto", "on", "off"):
            config = load_train_config(None, [f"data.path={data}", "backend=peft", f"quantization={quantization}",
                                              f"training.offload_activations={setting}"])
            expected = quantization != "none" if setting == "auto" else setting == "on"
            assert planned_run(config, machine=gpu).offload_activations == resolve(config, gpu).offload_activations
            assert resolve(config, gpu).offload_activations == expected


def test_a_layer_input_without_grad_is_refused():
    """Offloading like reentrant checkpointing: without a grad-requiring input nothing would reach LoRA."""
    layer = torch.nn.Linear(4, 4)
    with pytest.raises(RuntimeError, match="does not require grad"):
        offload.offloaded_checkpoint(layer, torch.randn(2, 4))


@pytest.mark.gpu
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_offloaded_checkpointing_on_cuda_under_bf16_autocast(dropout):
    """The CUDA path: pinned host copies, CUDA RNG replay, bf16 autocast restored in the backward."""
    results = []
    for mode in ("plain", "offloaded"):
        with torch.device("cuda"), torch.autocast("cuda", dtype=torch.bfloat16):
            results.append(_step(mode, dropout))
    (loss, grads), (offloaded_loss, offloaded_grads) = results
    assert torch.allclose(loss, offloaded_loss)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(grads, offloaded_grads))
