#!/usr/bin/env bash
# GPU training benchmark: `lorastack train` against the raw probe loop, same shapes, same run.
# Run as (on a CUDA machine, from the repo root): benchmarks/gpu/train_bench.sh "8b" "unsloth qlora"
#   $1: sizes (1b, 8b); $2: modes (unsloth, qlora, lora16); $3: "packing" to add the padded vs
#   padding-free comparison. Needs the probe (gpu_train_probe.py) and a tokenizer folder in $BENCH_DIR
#   (default .gpu/), wheels for bitsandbytes/unsloth/trl in $BENCH_DIR/wheels if not installed.
# Writes one JSON line per run to ${OUT:-/tmp}/train_bench.jsonl.
set -uo pipefail
sizes=${1:-"1b 8b"}; modes=${2:-"unsloth qlora lora16"}
bench=${BENCH_DIR:-.gpu}; out=${OUT:-/tmp}/train_bench.jsonl
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PROBE_TOKENIZER=$bench/tok HF_HUB_OFFLINE=1
if ! python -c "import unsloth, bitsandbytes" 2>/dev/null; then
    python -m pip install --no-deps --root-user-action=ignore "$bench"/wheels/*.whl 2>&1 | grep -iE "error|Successfully" | tail -5
fi
python benchmarks/gpu/make_data.py /tmp/bench-fixed.jsonl 256 fixed
python benchmarks/gpu/make_data.py /tmp/bench-mixed.jsonl 512 mixed
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
declare -A backend=([unsloth]="backend=unsloth quantization=nf4" [qlora]="backend=peft quantization=nf4" [lora16]="backend=peft quantization=none")
for size in $sizes; do
  for mode in $modes; do
    probe=$(timeout 400 python "$bench"/gpu_train_probe.py "$mode" "$size" 2>/tmp/probe-$mode-$size.err | tail -1)
    [ -n "$probe" ] || tail -5 /tmp/probe-$mode-$size.err
    echo "{\"kind\": \"probe\", \"result\": ${probe:-null}}" | tee -a "$out"
    rm -rf /tmp/lorastack-bench
    # Unsloth must be imported before transformers: it patches the model classes at import.
    pre="pass;"; [ "$mode" = unsloth ] && pre="import unsloth;"
    timeout 400 python -c "${pre} from lorastack.cli import main; main()" train benchmarks/gpu/train_bench.yaml \
        base_model=/tmp/rand-$size ${backend[$mode]} > /tmp/train-$mode-$size.log 2>&1
    card=/tmp/lorastack-bench/adapter/training_card.json
    plan=$(python -c "from finetune.plan_config import plan_for; from finetune.config import load_train_config as l
c = l(__import__('pathlib').Path('benchmarks/gpu/train_bench.yaml'), ['base_model=/tmp/rand-$size', *'${backend[$mode]}'.split()])
p, _ = plan_for(c, 80); print(round(p.allocated_bytes / 2**30, 2))" 2>/dev/null)
    if [ -f $card ]; then
      python -c "import json; c=json.load(open('$card')); print(json.dumps({'kind': 'lorastack', 'mode': '$mode', 'size': '$size', 'plan_allocated_gib': ${plan:-None}, **c['metrics']}))" | tee -a "$out"
    else
      echo "{\"kind\": \"lorastack\", \"mode\": \"$mode\", \"size\": \"$size\", \"error\": \"see log\"}" | tee -a "$out"
      tail -25 /tmp/train-$mode-$size.log; cp /tmp/train-$mode-$size.log ${OUT:-/tmp}/ 2>/dev/null
    fi
  done
done
if [ "${3:-}" = packing ]; then
  for packing in false true; do
    rm -rf /tmp/lorastack-bench
    timeout 300 python -m lorastack.cli train benchmarks/gpu/train_bench.yaml base_model=/tmp/rand-1b backend=peft \
        quantization=none data.path=/tmp/bench-mixed.jsonl data.packing=$packing training.max_steps=16 > /tmp/train-pack-$packing.log 2>&1
    python -c "import json; c=json.load(open('/tmp/lorastack-bench/adapter/training_card.json')); print(json.dumps({'kind': 'packing', 'packing': $([ $packing = true ] && echo True || echo False), **c['metrics']}))" | tee -a "$out" || tail -20 /tmp/train-pack-$packing.log
  done
fi
