"""Training on 1 GPU vs 2 GPUs with `lorastack train` itself: DDP and FSDP, bf16 LoRA and QLoRA, plan beside each.

Run as (repository root, a CUDA machine with 2 GPUs; see train_multi.sh):
    python benchmarks/gpu/train_multi.py --tokenizer TOKDIR --out OUT [--runs "1b/lora/1 1b/lora/ddp ..."]

Each run is ``size/mode/layout``: size 1b or 8b (random-init Llama 3.2 1B / Llama 3.1 8B shapes with the embedded
model's 49,152-token vocabulary; "tiny" for a CPU check), mode lora (bf16 base) or qlora (NF4, needs bitsandbytes:
skipped without it), layout 1 (one GPU), ddp or fsdp (two processes under torchrun, through ``--gpus 2``); a fourth
part ``/nooffload`` keeps QLoRA's layer inputs on the GPU (its default offloads them to host RAM), ``/offload``
moves a bf16 run's to host RAM.
Batch 4 x 1024 tokens per GPU, r=16 on all linear layers, gradient checkpointing, torch AdamW, 30 steps; the
steady tokens/s leaves out the first 3 steps (totals over the processes; with 12 steps, the first runs measured under
3 s each, and the 1-GPU QLoRA baseline came out faster than bf16 LoRA). Every run writes one JSON line to
OUT/train_multi.jsonl with the card's metrics and `lorastack plan`'s per-GPU prediction for the same layout.
Runs stop being started once --budget seconds have passed (the line says "skipped"), so the whole fits its slot.

``--device cpu`` checks the same path on a CPU: tiny shape, 2 x 128 tokens, CPU processes (gloo) for ddp/fsdp.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")  # fmt: skip
DEFAULT_RUNS = "1b/lora/1 1b/lora/ddp 1b/qlora/1 1b/qlora/ddp 8b/lora/1 8b/lora/fsdp 8b/qlora/1 8b/qlora/fsdp"
MODES = {"lora": ["backend=peft", "quantization=none"], "qlora": ["backend=peft", "quantization=nf4"]}


def make_model(size: str, tokenizer: Path, out: Path, cuda: bool) -> Path:
    """A random-init Llama of ``size`` in bfloat16 with the tokenizer beside it (made once per OUT)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = out / f"rand-{size}"
    if (folder / "config.json").is_file():
        return folder
    config = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, **SHAPES[size])  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    for name in TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            shutil.copy(tokenizer / name, folder / name)
    return folder


def settings(model: Path, mode: str, data: Path, run_dir: Path, cpu: bool, steps: int) -> list[str]:
    """`lorastack train` KEY=VALUE settings of one run (the recipe is train_bench.yaml's shape, spelled out)."""
    shape = (
        ["data.max_length=128", "training.batch_size=2", "backend=cpu", "quantization=none"]
        if cpu
        else ["data.max_length=1024", "training.batch_size=4", *MODES[mode], "training.gradient_checkpointing=on"]
    )
    return [f"base_model={model}", f"data.path={data}", "data.eval_fraction=0", "data.packing=false",
            "lora.r=16", "lora.alpha=32", "lora.target_modules=all-linear", f"training.max_steps={steps}",
            "training.logging_steps=4", "training.save_steps=1000", "training.optimizer=adamw_torch",
            f"output_dir={run_dir}", *shape]  # fmt: skip


def plan_gib(overrides: list[str], gpus: int, layout: str) -> float | None:
    """`lorastack plan`'s per-GPU peak (tensors, comparable with max_memory_allocated) for this layout."""
    from lorastack.finetune.config import load_train_config
    from lorastack.finetune.memory_plan import plan_for

    try:
        estimate, _ = plan_for(load_train_config(None, overrides), 140, gpus, "none" if gpus == 1 else layout)
    except Exception as exc:  # noqa: BLE001 (a benchmark line records why, and the runs go on)
        print(f"plan failed: {exc}", file=sys.stderr)
        return None
    return round(estimate.allocated_bytes / 2**30, 2)


def run_one(spec: str, args: argparse.Namespace, data: Path, log_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    size, mode, layout, *flags = spec.split("/")
    if "nooffload" in flags:  # e.g. 1b/qlora/ddp/nooffload: QLoRA's layer inputs kept on the GPU
        extra = (*extra, "training.offload_activations=off")
    if "offload" in flags:  # e.g. 8b/lora/fsdp/offload: checkpointed layer inputs in host RAM
        extra = (*extra, "training.offload_activations=on")
    cpu = args.device == "cpu"
    gpus = 1 if layout == "1" else 2
    line: dict = {"run": spec, "size": size, "mode": mode, "layout": layout, "gpus": gpus, "extra": list(extra)}
    if mode == "qlora" and not _importable("bitsandbytes"):
        return {**line, "skipped": "bitsandbytes is not installed"}
    if cpu and (mode == "qlora" or layout == "fsdp"):
        return {**line, "skipped": "QLoRA and FSDP are GPU measurements"}
    model = make_model("tiny" if cpu else size, args.tokenizer, args.out, not cpu)
    run_dir = Path(args.work) / spec.replace("/", "-")
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = settings(model, mode, data, run_dir, cpu, args.steps)
    if layout in ("ddp", "fsdp"):
        overrides.append(f"training.distributed={layout}")
    overrides += extra
    command = [sys.executable, "-m", "lorastack.cli", "train", *overrides, *(["--gpus", "2"] if gpus == 2 else [])]
    log = log_dir / f"{spec.replace('/', '-')}{'-' + '-'.join(extra) if extra else ''}.log"
    env = dict(os.environ)
    if args.profile:  # steps 6-8 profiled on every process (finetune/profile.py): slower, the tables are the point
        env["LORASTACK_PROFILE"] = str(args.out / "profiles" / log.stem)
    started = time.perf_counter()
    with log.open("w") as fh:
        try:
            status = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, timeout=args.run_timeout,
                                    env=env).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            status = "timeout"
    line["wall_seconds"] = round(time.perf_counter() - started, 1)
    card = run_dir / "adapter" / "training_card.json"
    if status == 0 and card.is_file():
        line.update(json.loads(card.read_text())["metrics"])
    else:
        line["error"] = f"exit {status}; log {log}"
        line["log_tail"] = log.read_text()[-3000:]
    line["plan_allocated_gib_per_gpu"] = plan_gib(overrides, gpus, layout)
    shutil.rmtree(run_dir, ignore_errors=True)
    return line


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder with the embedded model's tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="results (train_multi.jsonl), logs and the models")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="size/mode/layout ... (default: %(default)s)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--budget", type=float, default=380, help="seconds after which no further run starts")
    parser.add_argument("--run-timeout", type=float, default=150)
    parser.add_argument("--profile", action="store_true",
                        help="profile steps 6-8 of each run on every process: OUT/profiles/RUN/profile-rankR.txt "
                        "(those runs' tokens/s are not their speed)")  # fmt: skip
    parser.add_argument("--work", default="/tmp/lorastack-multi", help="run folders (deleted after each run)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    data = args.out / "fixed.jsonl"
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_data.py")), str(data), "256", "fixed"],
                   check=True)  # fmt: skip
    results = args.out / "train_multi.jsonl"
    import torch

    host = {"kind": "host", "torch": torch.__version__, "gpus": torch.cuda.device_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "bitsandbytes": _importable("bitsandbytes"), "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    with results.open("a") as fh:
        fh.write(json.dumps(host) + "\n")
    print(json.dumps(host), flush=True)
    for spec in args.runs.split():
        elapsed = time.perf_counter() - started
        if elapsed > args.budget:
            line = {"run": spec, "skipped": f"time budget ({elapsed:.0f} s of {args.budget:.0f} s spent)"}
        else:
            line = run_one(spec, args, data, logs)
        _record(results, line)
        if "error" in line and "/qlora/" in spec and not spec.endswith("/1"):
            # QLoRA offloads layer inputs by default (training.offload_activations auto): if that failed with
            # several processes, measure the same run without it, so the slot still gives a number.
            _record(results, run_one(spec, args, data, logs, ("training.offload_activations=off",)))
    print(f"done in {time.perf_counter() - started:.0f} s; results in {results}", flush=True)


def _record(results: Path, line: dict) -> None:
    with results.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps({k: v for k, v in line.items() if k != "log_tail"}), flush=True)


if __name__ == "__main__":
    main()
