"""How much of the held-out no-tool set the base model knows at all: the embedded SmolLM2-135M-Instruct asked each
question plainly (no system prompt, no tools, greedy, 48 new tokens) and scored by `lorastack eval`'s own
:func:`score`. The agent's figure for the base model (tools listed, its system prompt) is beside it in
`benchmarks/results/evalsets-broad-a-vs-base-cpu.json`.

    .venv/bin/python benchmarks/base_knowledge.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorastack.agent.evaluate import load_items, score
from lorastack.models import resolve_base_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evalset", type=Path, default=ROOT / "agent" / "evalsets" / "no_tool.jsonl")
    parser.add_argument("--json", type=Path, help="write the per-question results here")
    args = parser.parse_args()
    base = resolve_base_model(None)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    results = []
    for item in load_items(args.evalset):
        messages = [{"role": "user", "content": item.question}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**inputs, max_new_tokens=48, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        right = score(item.answer, answer, item.tolerance, item.question)
        results.append({"question": item.question, "expected": item.answer, "answer": answer, "correct": right})
        print(f"{'✓' if right else '✗'} {item.question[:60]} -> {answer[:70]!r}", flush=True)
    right = sum(r["correct"] for r in results)
    summary = {"kind": "base_knowledge", "model": base.name, "evalset": args.evalset.name, "items": len(results),
               "correct": right, "accuracy": round(right / len(results), 4)}  # fmt: skip
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
