#!/usr/bin/env bash
# Multi-GPU training benchmark: `lorastack train` on 1 GPU vs 2 GPUs (DDP, FSDP), bf16 LoRA and QLoRA, with
# `lorastack plan --gpus 2`'s per-GPU prediction beside each measured peak. About 8 minutes on 2 x H200.
# Run from the repository root on a machine with 2 CUDA GPUs, torch (CUDA), transformers, peft, accelerate and
# lorastack installed from this tree (pip install --no-deps .); bitsandbytes optional (the QLoRA runs are skipped without it):
#   benchmarks/gpu/train_multi.sh TOKDIR OUT ["RUNS"]
#   TOKDIR: the embedded model's tokenizer files; OUT: results (OUT/train_multi.jsonl), logs and the random models;
#   RUNS: size/mode/layout ... (default in train_multi.py: 1b lora and qlora on 1 GPU and DDP, 8b on 1 GPU and FSDP),
#   e.g. "8b/lora/1 8b/lora/fsdp" for one part. DEVICE=cpu checks the same path on a CPU (tiny shape, gloo).
set -euo pipefail
tok=${1:?tokenizer folder}; out=${2:?output folder}; runs=${3:-}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python benchmarks/gpu/train_multi.py --tokenizer "$tok" --out "$out" --device "${DEVICE:-cuda}" ${runs:+--runs "$runs"} \
    ${BUDGET:+--budget "$BUDGET"}
