#!/usr/bin/env bash
# Training on the CPU, same run: the chunked loss against the model's own, padded against padding-free batches,
# random batches against length-grouped ones.
# Run as: benchmarks/train_cpu_bench.sh [STEPS]   (from the repo root, after `make setup`); VARIANTS="..." picks.
# Trains the embedded SmolLM2-135M with the shipped CPU recipe on `lorastack data synth` tool-use chats
# (written to /tmp/train-cpu-bench if data/tools is missing). Prints one JSON line per run: peak RSS,
# tokens/s and the final train loss, and writes them to .bench/train_cpu.jsonl.
set -euo pipefail
steps=${1:-6}
py=${PY:-.venv/bin/python}
data=data/tools/train.jsonl
if [ ! -f $data ]; then
  $py -m lorastack.cli data synth /tmp/train-cpu-bench --train 200 --eval 10 --seed 0 > /dev/null
  data=/tmp/train-cpu-bench/train.jsonl
fi
mkdir -p .bench; out=.bench/train_cpu.jsonl; : > $out
all=("chunked_loss=true packing=true" "chunked_loss=false packing=true" "chunked_loss=true packing=false"
     "chunked_loss=true packing=false group_by_length=true")
if [ -n "${VARIANTS:-}" ]; then IFS=, read -ra all <<< "$VARIANTS"; fi  # comma-separated
for variant in "${all[@]}"; do
  set -- $variant
  rm -rf /tmp/train-cpu-bench-run
  $py -m lorastack.cli train finetune/recipes/smollm2-135m-tools.yaml output_dir=/tmp/train-cpu-bench-run \
      data.path=$data data.max_length=1024 data.eval_fraction=0 training.max_steps=$steps training.save_steps=1000 \
      training.$1 data.$2 ${3:+data.$3} > /tmp/train-cpu-bench.log 2>&1 || { tail -20 /tmp/train-cpu-bench.log; exit 1; }
  $py -c "import json; m = json.load(open('/tmp/train-cpu-bench-run/adapter/training_card.json'))['metrics']
print(json.dumps({'variant': '$variant', **m}))" | tee -a $out
done
