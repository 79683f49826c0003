#!/usr/bin/env bash
# GPU training benchmark: `lorastack train` against the raw probe loop, same shapes, same run.
# Run as (on a CUDA machine, from the repo root): benchmarks/gpu/train_bench.sh "8b" "unsloth qlora"
#   $1: sizes (1b, 8b); $2: modes (unsloth, qlora, lora16, qlora_offload, lora16_offload); $3: "packing" to add
#   padded vs padding-free batches on variable-length chat data (the 135M and 1B shapes, random init).
#   OPTIMIZER=auto (or another training.optimizer) replaces the probe's AdamW in lorastack's runs.
# Needs the probe (gpu_train_probe.py) and a tokenizer folder in $BENCH_DIR (default .gpu/), wheels for
# bitsandbytes/unsloth/trl in $BENCH_DIR/wheels if not installed, and for "packing" chat rows in
# $BENCH_DIR/tools.jsonl (e.g. 2000 rows of `lorastack data synth`'s train.jsonl).
# Writes one JSON line per run to ${OUT:-/tmp}/train_bench.jsonl.
set -uo pipefail
sizes=${1-"1b 8b"}; modes=${2-"unsloth qlora lora16"}  # "" runs none
bench=${BENCH_DIR:-.gpu}; out=${OUT:-/tmp}/train_bench.jsonl
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PROBE_TOKENIZER=$bench/tok HF_HUB_OFFLINE=1
if ! python -c "import unsloth, bitsandbytes" 2>/dev/null; then
    python -m pip install --no-deps --root-user-action=ignore "$bench"/wheels/*.whl 2>&1 | grep -iE "error|Successfully" | tail -5
fi
python benchmarks/gpu/make_data.py /tmp/bench-fixed.jsonl 256 fixed
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# qlora is the probe's loop (layer inputs kept on the GPU); qlora_offload is lorastack's default for quantized runs.
declare -A backend=([unsloth]="backend=unsloth quantization=nf4"
  [qlora]="backend=peft quantization=nf4 training.offload_activations=off"
  [lora16]="backend=peft quantization=none"
  [qlora_offload]="backend=peft quantization=nf4 training.offload_activations=on"
  [lora16_offload]="backend=peft quantization=none training.offload_activations=on")
optimizer=${OPTIMIZER:+training.optimizer=$OPTIMIZER}

card_line() {  # $1: JSON fields to put first; prints the run's metrics from its card, or the log's tail
  local card=/tmp/lorastack-bench/adapter/training_card.json
  if [ -f $card ]; then
    python -c "import json; c=json.load(open('$card')); print(json.dumps({$1, **c['metrics']}))" | tee -a "$out"
  else
    echo "{$1, \"error\": \"see log\"}" | tee -a "$out"; tail -25 "$2"; cp "$2" ${OUT:-/tmp}/ 2>/dev/null
  fi
}

for size in $sizes; do
  for mode in $modes; do
    if [[ "$mode" != *_offload ]]; then  # the probe has no such mode: compare with its qlora or lora16
      probe=$(timeout 400 python "$bench"/gpu_train_probe.py "$mode" "$size" 2>/tmp/probe-$mode-$size.err | tail -1)
      [ -n "$probe" ] || tail -5 /tmp/probe-$mode-$size.err
      echo "{\"kind\": \"probe\", \"result\": ${probe:-null}}" | tee -a "$out"
    fi
    rm -rf /tmp/lorastack-bench
    # Unsloth must be imported before transformers: it patches the model classes at import.
    pre="pass;"; [ "$mode" = unsloth ] && pre="import unsloth;"
    timeout 400 python -c "${pre} from lorastack.cli import main; main()" train benchmarks/gpu/train_bench.yaml \
        base_model=/tmp/rand-$size ${backend[$mode]} $optimizer > /tmp/train-$mode-$size.log 2>&1
    plan=$(python -c "from lorastack.finetune.memory_plan import plan_for; from lorastack.finetune.config import load_train_config as l
overrides = ['base_model=/tmp/rand-$size', *'${backend[$mode]} $optimizer'.split()]
c = l(__import__('pathlib').Path('benchmarks/gpu/train_bench.yaml'), overrides)
p, _ = plan_for(c, 80); print(round(p.allocated_bytes / 2**30, 2))" 2>/dev/null)
    fields="\"kind\": \"lorastack\", \"mode\": \"$mode\", \"size\": \"$size\""
    fields="$fields, \"optimizer\": \"${OPTIMIZER:-adamw_torch}\""
    card_line "$fields, \"plan_allocated_gib\": ${plan:-None}" /tmp/train-$mode-$size.log
  done
done

if [ "${3:-}" = packing ]; then
  # Variable-length chat data (tool-calling conversations), padded vs padding-free, on the demo recipe's shape
  # (SmolLM2-135M, bs 16, bf16 LoRA) and on the 1B shape (bs 8, checkpointing): non-padding tokens/s and peak.
  python - <<'PY'
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
import os
shapes = {  # the 1B shape is the probe's, made here when no 1b run came first
    "135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536, max_position_embeddings=8192, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, max_position_embeddings=4096),
}
for name, shape in shapes.items():
    path = f"/tmp/rand-{name}"
    if not os.path.exists(f"{path}/config.json"):
        LlamaForCausalLM(LlamaConfig(vocab_size=49152, **shape)).to(torch.bfloat16).save_pretrained(path)
        AutoTokenizer.from_pretrained(os.environ["PROBE_TOKENIZER"]).save_pretrained(path)
PY
  template=lorastack/templates/chatml_tools.jinja
  for shape in 135m 1b; do
    if [ $shape = 135m ]; then
      recipe="finetune/recipes/smollm2-135m-tools-demo.yaml base_model=/tmp/rand-135m output_dir=/tmp/lorastack-bench"
    else
      recipe="benchmarks/gpu/train_bench.yaml base_model=/tmp/rand-1b backend=peft quantization=none training.batch_size=8"
    fi
    for packing in false true; do
      rm -rf /tmp/lorastack-bench
      timeout 300 python -m lorastack.cli train $recipe data.path=$bench/tools.jsonl data.chat_template=$template \
          data.eval_fraction=0 data.packing=$packing training.max_steps=40 training.save_steps=1000 \
          > /tmp/train-pack-$shape-$packing.log 2>&1
      card_line "\"kind\": \"packing\", \"shape\": \"$shape\", \"packing\": \"$packing\"" \
          /tmp/train-pack-$shape-$packing.log
    done
  done
fi
