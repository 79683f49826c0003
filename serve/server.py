"""Start the lorastack server: vLLM, sized for the registry, with the registry's loaded adapters."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lorastack.errors import LorastackError, ServerError
from lorastack.models import resolve_base_model
from serve.config import ServeConfig, fitting_rank
from serve.engine import VLLMProcess, effective_tool_parser, pick_device, port_in_use, vllm_command
from serve.loading import restore_loaded
from serve.registry import Registry
from serve.state import ServerState, current_server, state_path, write_state

logger = logging.getLogger(__name__)


@dataclass
class RunningServer:
    state: ServerState
    process: VLLMProcess
    restore_errors: list[LorastackError]
    home: Path

    def stop(self) -> None:
        self.process.stop()
        path = state_path(self.home)
        try:
            if json.loads(path.read_text()).get("pid") == self.state.pid:
                path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    config: ServeConfig,
    registry: Registry | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunningServer:
    """Start vLLM for ``config``, wait until it is healthy, then load every adapter marked loaded."""
    say = progress or (lambda msg: logger.info("%s", msg))
    registry = registry or Registry()
    running = current_server(registry.home)
    if running is not None:
        raise ServerError(
            f"A lorastack server is already running at {running.url} (pid {running.pid}).",
            "Use it, or stop it first (Ctrl-C in its terminal, or kill the pid).",
        )
    device = pick_device(config.device)
    if port_in_use(config.host, config.port):
        raise ServerError(
            f"Port {config.port} on {config.host} is already in use.",
            f"Stop what listens there, or pick another port: lorastack serve --port {config.port + 1}",
        )
    base = resolve_base_model(config.base_model, say)
    max_rank = config.max_lora_rank or fitting_rank([a.card["rank"] for a in registry.list()])
    tool_parser = effective_tool_parser(config, base)
    argv, env = vllm_command(config, base, device, max_rank, tool_parser)
    process = VLLMProcess(argv, env, config.url, registry.home / "logs" / f"vllm-{config.port}.log")
    say(f"Starting vLLM ({device}) on {base.name}, max LoRA rank {max_rank}...")
    process.start()
    try:
        process.wait_healthy(config.startup_timeout)
        state = ServerState(
            url=config.url,
            pid=process.process.pid,
            base_name=base.name,
            base_path=base.path,
            base_source=base.source,
            device=device,
            max_lora_rank=max_rank,
            max_loras=config.max_loras,
            tool_call_parser=tool_parser,
        )
        write_state(state_path(registry.home), state)
        errors = restore_loaded(registry, state, say)
    except BaseException:
        process.stop()
        raise
    return RunningServer(state, process, errors, registry.home)


@contextmanager
def running_server(
    config: ServeConfig | None = None, progress: Callable[[str], None] | None = None
) -> Iterator[ServerState]:
    """The server that is already running, or a temporary one for the duration of the block."""
    registry = Registry()
    state = current_server(registry.home)
    if state is not None:
        yield state
        return
    with start_server(config or ServeConfig(), registry, progress) as server:
        yield server.state
