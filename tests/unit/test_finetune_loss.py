"""The chunked training loss: the same loss and gradients as the model's own, on random tensors and on the
embedded model with a LoRA adapter, through the Trainer that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lorastack.finetune.data import NUM_TOKENS, DataConfig, PackedRowsCollator, PaddedCollator, load_examples
from lorastack.finetune.loss import IGNORE, chunked_cross_entropy, split_head
from lorastack.templates import TOOLS_TEMPLATE

FIXTURE = Path(__file__).parents[1] / "data" / "tool_chat.jsonl"


def reference(hidden, weight, labels, num_items=None):
    logits = (hidden @ weight.T).float()
    reduction = "mean" if num_items is None else "sum"
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, weight.shape[0]), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE, reduction=reduction)
    return loss if num_items is None else loss / num_items


@pytest.mark.parametrize("num_items", [None, 57])
def test_chunks_give_the_full_loss_and_gradients(num_items):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 40, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 50, (3, 40), generator=gen)
    labels[:, :7] = IGNORE  # a prompt
    labels[2, 30:] = IGNORE  # padding

    expected = reference(hidden, weight, labels, num_items)
    grads = torch.autograd.grad(expected, (hidden, weight))
    # 50 * 7 elements per chunk: 7 tokens a chunk, the last one short.
    got = chunked_cross_entropy(hidden, weight, labels, num_items, chunk_elements=50 * 7)
    assert torch.allclose(got, expected)
    chunk_grads = torch.autograd.grad(got, (hidden, weight))
    for a, b in zip(chunk_grads, grads):
        assert torch.allclose(a, b)
    # Prompt positions get no gradient: they never went through the head.
    assert torch.all(chunk_grads[0][:, :6] == 0) and chunk_grads[0][:, 6].abs().sum() > 0


def test_no_labelled_token_is_a_zero_loss():
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    loss = chunked_cross_entropy(hidden, torch.randn(9, 4), torch.full((1, 5), IGNORE))
    assert loss.item() == 0
    loss.backward()  # and still differentiable


@pytest.fixture(scope="module")
def lora_model(base_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_model.path, dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(model, config).train(), AutoTokenizer.from_pretrained(base_model.path)


def test_only_plain_causal_heads_are_split(lora_model):
    model, _ = lora_model
    decoder, head = split_head(model)
    assert head is model.get_base_model().lm_head and decoder is model.get_base_model().model

    from transformers import Gemma2Config, Gemma2ForCausalLM

    tiny = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, head_dim=8)
    assert split_head(Gemma2ForCausalLM(Gemma2Config(**tiny))) is None  # soft-capped logits


@pytest.mark.parametrize("packed", [False, True])
def test_trainer_loss_matches_the_models_own(lora_model, tmp_path, monkeypatch, packed):
    """Through the Trainer subclass a run uses: chunked on and off give the same loss and LoRA gradients, on a
    padded batch and on packed rows, in chunks of 50 tokens; and the same eval loss."""
    import lorastack.finetune.loss

    monkeypatch.setattr(lorastack.finetune.loss, "CHUNK_ELEMENTS", 50 * 49152)
    from transformers import TrainingArguments

    from lorastack.finetune.hf_trainer import trainer_class
    from lorastack.finetune.measure import TokenCounter

    model, tokenizer = lora_model
    train, _, _ = load_examples(DataConfig(path=FIXTURE, eval_fraction=0), tokenizer, TOOLS_TEMPLATE.read_text())
    features = [train[i] for i in (2, 0, 5)]
    collator = PackedRowsCollator(tokenizer.pad_token_id, 300) if packed else PaddedCollator(tokenizer.pad_token_id)
    batch = {k: v for k, v in collator(features).items() if k != NUM_TOKENS}
    num_items = (batch["labels"][:, 1:] != IGNORE).sum()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")

    results = []
    for chunked in (False, True):
        trainer = trainer_class(TokenCounter(), chunked)(model=model, args=args)
        assert trainer.uses_chunked_loss() == chunked
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        model.eval()
        eval_loss, logits, _ = trainer.prediction_step(model, dict(batch), prediction_loss_only=True)
        model.train()
        assert logits is None
        results.append((loss.detach(), grads, eval_loss))
    (full, full_grads, full_eval), (chunks, chunk_grads, chunk_eval) = results
    assert num_items > 50  # more than one chunk
    assert torch.allclose(full, chunks, rtol=1e-5) and torch.allclose(full_eval, chunk_eval, rtol=1e-5)
    assert len(full_grads) == 30 * 2 * 2
    # float32 sums in another order: each tensor within 1e-5 of its largest value (a wrong loss is off by ~1e-1).
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(full_grads, chunk_grads))


def test_a_replaced_forward_puts_back_what_the_instance_had() -> None:
    """accelerate sets an autocast-wrapped forward on the model instance under mixed precision: the chunked loss
    replaces it for one call and must put it back, not leave the class's plain forward."""
    import torch

    from lorastack.finetune.hf_trainer import forward_replaced

    module = torch.nn.Linear(2, 2)
    wrapped = lambda x: "wrapped"  # noqa: E731 - stands for accelerate's instance-level forward
    module.forward = wrapped
    with forward_replaced(module, lambda x: "chunked"):
        assert module(torch.zeros(2)) == "chunked"
    assert module.forward is wrapped
    plain = torch.nn.Linear(2, 2)
    with forward_replaced(plain, lambda x: "chunked"):
        assert plain(torch.zeros(2)) == "chunked"
    assert "forward" not in plain.__dict__ and plain(torch.zeros(2)).shape == (2,)
