"""Random-init base models and LoRA adapters for the GPU serving benchmark and the GPU tests (no hub needed).

Run as: python benchmarks/gpu/make_serving_models.py --tokenizer TOKDIR --out DIR [--shapes 135m,1b] [--adapters 11]

TOKDIR holds the embedded model's tokenizer files and config.json (3.5 MB; copied from the converted embedded
model). Writes, in DIR:

- ``cache/models/SmolLM2-135M-Instruct``: the embedded model's shape with random weights, where lorastack looks
  for the converted embedded model (point LORASTACK_CACHE at ``DIR/cache``), so the integration tests and the
  bundled tools-demo adapter run on it;
- ``llama-1b``: a Llama 3.2 1B shape (16 layers, hidden 2048, GQA 32/8, MLP 8192) with the SmolLM2 vocabulary
  (49,152), 1.07B parameters, bfloat16;
- ``adapters-1b/a0 ... a{N-1}``: PEFT LoRA adapters for it, rank 16 on all seven linear layers, random A and B.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _save(config: LlamaConfig, tokenizer: Path, out: Path, name: str) -> Path:
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.name_or_path = name
    model.save_pretrained(out)
    for file in TOKENIZER_FILES:
        if (tokenizer / file).is_file():
            shutil.copy(tokenizer / file, out / file)
    return out


def make_135m(tokenizer: Path, out: Path) -> Path:
    config = LlamaConfig(**{k: v for k, v in json.loads((tokenizer / "config.json").read_text()).items()
                            if not k.startswith("_") and k not in ("transformers_version", "quantization_config")})
    folder = _save(config, tokenizer, out / "cache" / "models" / "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct")
    (folder / "lorastack_source.json").write_text(json.dumps({"source": "random-init SmolLM2-135M shape"}) + "\n")
    return folder


def make_1b(tokenizer: Path, out: Path) -> Path:
    config = LlamaConfig(
        vocab_size=49152, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2, dtype="bfloat16",
    )  # fmt: skip
    return _save(config, tokenizer, out / "llama-1b", "llama-1b")


def make_adapters(base: Path, out: Path, count: int, rank: int = 16) -> None:
    from peft import LoraConfig, get_peft_model

    model = LlamaForCausalLM.from_pretrained(base, dtype=torch.bfloat16, device_map="cuda" if torch.cuda.is_available() else None)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=ALL_LINEAR, init_lora_weights=False)
    peft_model = get_peft_model(model, config, autocast_adapter_dtype=False)
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    for i in range(count):
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for p in params:
                p.normal_(0, 0.02)
        peft_model.save_pretrained(out / f"a{i}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shapes", default="135m,1b")
    parser.add_argument("--adapters", type=int, default=11, help="adapters for the 1B shape (0: none)")
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    started = time.monotonic()
    if "135m" in shapes:
        print("135m:", make_135m(args.tokenizer, args.out), flush=True)
    if "1b" in shapes:
        base = make_1b(args.tokenizer, args.out)
        print("1b:", base, flush=True)
        if args.adapters:
            make_adapters(base, args.out / "adapters-1b", args.adapters)
            print("adapters:", args.adapters, flush=True)
    print(f"made in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
