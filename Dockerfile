# The lorastack front door (API keys, adapter registry, runtime load/unload) for compose.yaml.
#
# Run as: docker compose up -d   (see compose.yaml; the image alone: docker build -t lorastack .)
#
# Base dependencies only: the model runs in the vllm/vllm-openai container, which this one reaches over HTTP,
# so neither vLLM nor torch is installed here.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LORASTACK_HOME=/data

WORKDIR /src
# The folders of pyproject.toml's [tool.setuptools] package-dir (installed as lorastack.*), plus the metadata it reads.
COPY pyproject.toml README.md ./
COPY lorastack ./lorastack
COPY serve ./serve
COPY agent ./agent
COPY finetune ./finetune
COPY tools ./tools
# Base dependencies only (no vLLM, no torch): the front door talks to the vllm service over HTTP. The import
# check fails the build, not the first request, if a module the front door needs is missing.
RUN pip install --no-cache-dir . \
    && cd / && python -c "import lorastack.serve.server, lorastack.serve.front_door" \
    && lorastack --help > /dev/null

# A fixed uid, so files in the lorastack-data volume keep one owner across rebuilds. /data exists in the
# image, owned by that user, so that Docker gives a new, empty volume mounted there the same owner.
RUN useradd --create-home --uid 1000 --user-group lorastack \
    && mkdir -p /data/incoming \
    && chown -R lorastack:lorastack /data
USER lorastack
WORKDIR /home/lorastack

EXPOSE 9000
# compose.yaml's command with its defaults (tests/unit/test_compose.py keeps the two equal).
CMD ["lorastack", "serve", "--vllm-url", "http://vllm:8000", "--base-model", "Qwen/Qwen2.5-7B-Instruct", \
     "--max-lora-rank", "64", "--max-loras", "8", "--tool-call-parser", "hermes", "--host", "0.0.0.0", "--port", "9000"]
