"""How often an adapter's sampled replies do what the data's replies do: for each conversation of a training file,
the prompt that `lorastack train method=grpo` would give it, SAMPLES replies at a temperature, and the share that
:func:`lorastack.finetune.grpo.tool_decision` rewards — GRPO's own reward, before and after a run.

    .venv/bin/python benchmarks/decision_rate.py DATA.jsonl ADAPTER [ADAPTER ...] [--samples 16] [--json OUT]
        [--limit N] [--keep-mixed GRPO.jsonl]

A prompt whose replies all earn the same (0 or 1) gives GRPO nothing to learn from: ``--keep-mixed`` writes the rows
of DATA whose rate (with the first ADAPTER) lies strictly between 0 and 1, the data of a GRPO run from that adapter.
``--limit N`` screens N prompts drawn at random (seeded). Samples on a CUDA GPU where there is one (bfloat16).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorastack.finetune.config import load_train_config
from lorastack.finetune.data.sources import rows
from lorastack.finetune.grpo import grpo_dataset, tool_decision
from lorastack.finetune.trainer import chat_template_for
from lorastack.models import resolve_base_model


def rates(adapter: Path, data: Path, samples: int, temperature: float, tokens: int, seed: int,
          limit: int | None) -> list[dict]:  # fmt: skip
    config = load_train_config(None, [f"data.path={data}"])
    base = resolve_base_model(None)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    device, dtype = ("cuda", torch.bfloat16) if torch.cuda.is_available() else ("cpu", torch.float32)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype), str(adapter))
    model.to(device)
    prompts, _ = grpo_dataset(config, tokenizer, chat_template_for(config, base))
    chosen = range(len(prompts))
    if limit is not None and limit < len(prompts):
        chosen = sorted(random.Random(seed).sample(chosen, limit))
    torch.manual_seed(seed)
    out = []
    for row in (prompts[i] for i in chosen):
        inputs = tokenizer(row["prompt"], return_tensors="pt", add_special_tokens=False).to(device)
        generated = model.generate(**inputs, do_sample=True, temperature=temperature, max_new_tokens=tokens,
                                   num_return_sequences=samples, pad_token_id=tokenizer.eos_token_id)  # fmt: skip
        replies = tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        right = sum(tool_decision(replies, [row["reference"]] * samples)) / samples
        question = row["prompt"].rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>")[0]
        out.append({"question": question, "right": right, "row": row["row"]})
        print(f"{right:6.3f}  {question[:70]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("adapters", type=Path, nargs="+")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--limit", type=int, help="screen this many prompts, drawn at random (default: all)")
    parser.add_argument("--keep-mixed", type=Path, help="write DATA's rows rated strictly between 0 and 1 here")
    args = parser.parse_args()
    report = {"kind": "decision_rate", "data": args.data.name, "samples": args.samples,
              "temperature": args.temperature, "adapters": {}}  # fmt: skip
    for adapter in args.adapters:
        print(f"== {adapter}")
        found = rates(adapter, args.data, args.samples, args.temperature, args.max_tokens, args.seed, args.limit)
        mean = sum(r["right"] for r in found) / len(found)
        print(f"mean {mean:.3f}")
        report["adapters"][str(adapter)] = {"mean": round(mean, 4), "prompts": found}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.keep_mixed:
        first = report["adapters"][str(args.adapters[0])]["prompts"]
        mixed = {p["row"] for p in first if 0 < p["right"] < 1}
        config = load_train_config(None, [f"data.path={args.data}"])
        with args.keep_mixed.open("w") as out:
            for index, (_, row) in enumerate(rows(config.data)):
                if index in mixed:
                    out.write(json.dumps(row) + "\n")
        print(f"{len(mixed)} of {len(first)} prompts rated strictly between 0 and 1: {args.keep_mixed}")


if __name__ == "__main__":
    main()
