"""One process of test_fsdp_chunked_loss.py, started by torchrun (CPU processes, gloo):
``python -m torch.distributed.run --nproc-per-node 2 tests/integration/fsdp_loss_worker.py OUT``.

A small random Llama with LoRA, its decoder layers and root sharded with FSDP2 (``fully_shard``, as accelerate does
for the Trainer); the loss computed as the trainer computes it under FSDP (``chunked_cross_entropy`` on the last
hidden state, run as the root module's forward through ``forward_replaced``) against the model's own loss on the
unsharded model before. Writes OUT/rank{R}.json: both losses and the largest difference of the LoRA gradients."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from peft import LoraConfig, get_peft_model
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

from lorastack.finetune.hf_trainer import forward_replaced
from lorastack.finetune.loss import chunked_cross_entropy, split_head


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    torch.manual_seed(0)  # the same model on every process
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=500)  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False))  # fmt: skip
    ids = torch.randint(0, 500, (2, 16))
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt without labels, as assistant-only data has
    own = model(input_ids=ids, labels=labels).loss
    own.backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()

    for layer in model.get_base_model().model.layers:
        fully_shard(layer)
    fully_shard(model)  # the root: embeddings, final norm and lm_head, sharded over the processes
    decoder, head = split_head(model)

    def loss_forward(**features):
        hidden = decoder(**features, use_cache=False).last_hidden_state
        return chunked_cross_entropy(hidden, head.weight, labels, None, chunk_elements=500 * 5)  # 5-token chunks

    with forward_replaced(model, loss_forward):
        chunked = model(input_ids=ids)
    chunked.backward()
    worst = 0.0
    for name, p in model.named_parameters():
        if p.requires_grad:
            grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            worst = max(worst, (grad - reference[name]).abs().max().item())
    rank = dist.get_rank()
    (out / f"rank{rank}.json").write_text(json.dumps({"own": own.item(), "chunked": chunked.item(), "grad": worst}))
    # Every rank done with its collectives before gloo is torn down: once in a CI run, one rank aborted ("terminate
    # called without an active exception") as the processes ended, which gloo's threads do when work is still pending.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
