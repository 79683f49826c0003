#!/bin/bash
# lorastack serving on a lent GPU machine that has no registry access: install what was carried, make the models,
# run the GPU serving tests or the serving benchmark. Steps, each a separate call of this script:
#
#   benchmarks/gpu/serve_gpu.sh install PARTS_DIR SNAPSHOT_TAR   # vLLM + deps + lorastack into /tmp/site
#   benchmarks/gpu/serve_gpu.sh models TOKENIZER_DIR             # random-init shapes + adapters into /tmp/m
#   benchmarks/gpu/serve_gpu.sh bench OUT_DIR [serve_bench args] # the 1B shape: direct vs front door, ...
#   benchmarks/gpu/serve_gpu.sh tests OUT_DIR [pytest args]      # integration tests on CUDA (135M shape)
#
# PARTS_DIR holds blob.part-* (split of a tar of the vLLM wheel, trimmed as shared/PLATFORM.md says, its 78
# dependency wheels and platformdirs). SNAPSHOT_TAR is this repository's tree (the code that runs).
set -euo pipefail
step=$1; shift
SITE=/tmp/site SRC=/tmp/ls M=/tmp/m
export PYTHONPATH=$SITE PATH=$SITE/bin:$PATH VLLM_ALLOW_RUNTIME_LORA_UPDATING=True PYTHONUNBUFFERED=1
case $step in
install)
  parts=$1 snap=$2
  cat "$parts"/blob.part-* > /tmp/blob.tar && mkdir -p /tmp/wheels && tar xf /tmp/blob.tar -C /tmp/wheels && rm /tmp/blob.tar
  (cd /tmp/wheels && sha256sum -c SHA256SUMS --quiet)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE /tmp/wheels/*.whl
  rm -rf $SRC && mkdir -p $SRC && tar xf "$snap" -C $SRC && cp -r lorastack/adapters $SRC/lorastack/
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target $SITE $SRC
  (cd /tmp && python3 -c "import vllm, lorastack.serve.server, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)")
  ;;
models)
  python3 $SRC/benchmarks/gpu/make_serving_models.py --tokenizer "$1" --out $M
  ;;
bench)
  out=$1; shift
  cd $SRC && python3 benchmarks/gpu/serve_bench.py --base $M/llama-1b --adapters $M/adapters-1b \
    --out "$out/serve_bench.jsonl" --profile-out "$out/front_door_profile.json" "$@"
  ;;
tests)
  # From a copy of tests/ alone: in $SRC, its lorastack/ folder would shadow the installed package.
  out=$1; shift
  rm -rf /tmp/t && mkdir /tmp/t && cp -r $SRC/tests $SRC/pyproject.toml /tmp/t/
  cd /tmp/t && LORASTACK_CACHE=$M/cache python3 -m pytest -p no:cacheprovider -q -rA --durations=15 \
    --junitxml "$out/gpu_tests.xml" "$@"
  ;;
esac
