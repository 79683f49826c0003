"""Start the lorastack server: vLLM, sized for the registry, with the registry's loaded adapters."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn

from lorastack.access import DEFAULT_ALIAS
from lorastack.errors import LorastackError, ServerError
from lorastack.evaluation import Evaluator
from lorastack.models import resolve_base_model
from lorastack.serve.config import ServeConfig, fitting_rank, front_door_workers, lora_slots
from lorastack.serve.demo import install_demo_adapter
from lorastack.serve.engine import VLLMProcess, effective_tool_parser, pick_device, port_in_use, vllm_command
from lorastack.serve.front_door import FrontDoor
from lorastack.serve.jobs import DataCheck, JobSettings
from lorastack.serve.front_door.workers import WorkerPool
from lorastack.serve.registry import Registry
from lorastack.serve.state import ServerState, current_server, state_path, write_state

logger = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """vLLM (unless attached to one), the front door in front of it, and the supervisor that restarts vLLM."""

    state: ServerState
    process: VLLMProcess | None
    front_door: FrontDoor
    restore_errors: list[LorastackError]
    home: Path
    config: ServeConfig
    registry: Registry
    _front: uvicorn.Server | None = None
    pool: WorkerPool | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    failure: LorastackError | None = None
    restarts: int = 0

    def running(self) -> bool:
        return self.failure is None and not self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        self.front_door.jobs.stop()  # a job in training stays running: the next start resumes it
        if self.pool is not None:
            self.pool.stop()
        if self._front is not None:
            self._front.should_exit = True
        for thread in self._threads:
            thread.join(timeout=30)
        if self.process is not None:
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

    def _serve_front(self, host: str, port: int) -> None:
        front = uvicorn.Server(
            uvicorn.Config(self.front_door.app, host=host, port=port, log_level="warning", access_log=False,
                           timeout_keep_alive=30)
        )  # fmt: skip
        self._front = front
        thread = threading.Thread(target=front.run, name="lorastack-front-door", daemon=True)
        thread.start()
        self._threads.append(thread)
        deadline = time.monotonic() + 30
        while not front.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServerError(f"The front door could not listen on {host}:{port}.")
            time.sleep(0.05)

    def _supervise(self) -> None:
        """Restart vLLM whenever it dies; requests get a 503 with Retry-After meanwhile."""
        thread = threading.Thread(target=self._watch, name="lorastack-supervisor", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self) -> None:
        assert self.process is not None
        while not self._stopping.wait(0.5):
            if self.process.alive():
                continue
            self.front_door.available.clear()
            self.front_door.publish(wait=False)
            logger.warning("vLLM exited (code %s); restarting it...", self.process.process.returncode)
            try:
                self.process.stop()  # whatever workers are left
                self.process.start()
                self.process.wait_healthy(self.config.startup_timeout)
                self.front_door.restore()
            except Exception as exc:  # noqa: BLE001 - whatever it is, the server is down: say so, stop serving
                self.failure = exc if isinstance(exc, LorastackError) else ServerError(f"vLLM restart failed: {exc!r}")
                logger.error("vLLM could not be restarted: %s", self.failure)
                return
            self.restarts += 1
            self.state = replace(self.state, engine_pid=self.process.process.pid)
            write_state(state_path(self.home), self.state)
            self.front_door.available.set()
            self.front_door.publish(wait=False)
            logger.info("vLLM is back.")


def start_server(
    config: ServeConfig,
    registry: Registry | None = None,
    evaluator: Evaluator | None = None,
    data_check: DataCheck | None = None,
) -> RunningServer:
    """Start vLLM for ``config`` (or attach to ``config.vllm_url``), the front door on ``config.port``, the
    supervisor; then load every adapter marked loaded and every aliased version, and start the fine-tuning jobs'
    worker. ``evaluator`` runs the evals of gated promotions (see :mod:`lorastack.evaluation`), ``data_check``
    checks uploaded training data (see :mod:`lorastack.serve.jobs.files`). Progress is logged (``lorastack.report``)."""
    registry = registry or Registry()
    running = current_server(registry.home)
    if running is not None:
        raise ServerError(
            f"A lorastack server is already running at {running.url} (pid {running.pid}).",
            "Use it, or stop it first (Ctrl-C in its terminal, or kill the pid).",
        )
    device = "external" if config.vllm_url else pick_device(config.device)
    if port_in_use(config.host, config.port):
        raise ServerError(
            f"Port {config.port} on {config.host} is already in use.",
            f"Stop what listens there, or pick another port: lorastack serve --port {config.port + 1}",
        )
    base = resolve_base_model(config.base_model)
    if config.demo_adapter and (demo := install_demo_adapter(registry, base)) is not None:
        default = registry.alias(DEFAULT_ALIAS)
        role = "the default alias" if default and default.ref == demo.ref else "the default alias left as you set it"
        logger.info("Registered the bundled demo adapter as %s (%s).", demo.ref, role)
    max_rank = config.max_lora_rank or fitting_rank([a.card["rank"] for a in registry.list()])
    tool_parser = effective_tool_parser(config, base)
    process = None
    upstream_key = config.vllm_api_key
    if config.vllm_url:
        upstream = config.vllm_url.rstrip("/")
    else:
        inner = config.model_copy(update={"host": "127.0.0.1", "port": _free_port()})
        upstream = inner.url
        upstream_key = secrets.token_urlsafe(32)  # vLLM's own key, new at every start, known to this process only
        argv, env = vllm_command(inner, base, device, max_rank, tool_parser, api_key=upstream_key)
        process = VLLMProcess(argv, env, upstream, registry.home / "logs" / f"vllm-{config.port}.log")
        logger.info("Starting vLLM (%s) on %s, max LoRA rank %s (a minute or more; its log: %s)...", device,
                    base.name, max_rank, process.log_path)  # fmt: skip
        process.start()
    state = ServerState(
        url=config.url, pid=os.getpid(), base_name=base.name, base_path=base.path, base_source=base.source,
        device=device, max_lora_rank=max_rank, max_loras=lora_slots(config, device)[0], tool_call_parser=tool_parser,
        upstream_url=upstream, engine_pid=process.process.pid if process else 0,
    )  # fmt: skip
    try:
        front_door = FrontDoor(
            state,
            registry,
            evaluator=evaluator,
            upstream_key=upstream_key,
            max_loaded=config.max_loaded,
            on_demand=config.load_on_request,
            jobs=JobSettings(config.jobs_recipe, config.max_file_mib * 2**20),
            data_check=data_check,
        )
    except BaseException:
        if process is not None:
            process.stop()  # started above: never left running behind a failed start
        raise
    server = RunningServer(state, process, front_door, [], registry.home, config, registry)
    front = (config.host, config.port)
    try:
        if (workers := front_door_workers(config, device)) > 1:
            front = ("127.0.0.1", _free_port())  # the control process: reached by its workers and this machine only
            server.pool = WorkerPool(workers, config.host, config.port, f"http://{front[0]}:{front[1]}", upstream,
                                     upstream_key, base.name, registry.home)  # fmt: skip
            front_door.attach_workers(server.pool)
        if process is not None:
            process.wait_healthy(config.startup_timeout)
        elif not front_door.vllm.healthy():
            raise ServerError(f"No healthy vLLM at {upstream}.", "Start it first, or leave out --vllm-url.")
        server._serve_front(*front)
        server.restore_errors = front_door.restore()
        if server.pool is not None:
            logger.info("Starting %s front-door workers on port %s...", workers, config.port)
            try:
                server.pool.start()
            except RuntimeError as exc:
                raise ServerError(f"The front door could not start its workers ({exc}).",
                                  "See the log above; --workers 1 runs the front door in one process.") from None
        front_door.jobs.start()  # jobs left running by the last server resume from their checkpoints
        write_state(state_path(registry.home), state)  # other commands find it once it serves what it should
        if process is not None:
            server._supervise()
    except BaseException:
        server.stop()
        raise
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(config: ServeConfig | None = None, evaluator: Evaluator | None = None) -> Iterator[ServerState]:
    """The server that is already running, or a temporary one for the duration of the block."""
    registry = Registry()
    state = current_server(registry.home)
    if state is not None:
        yield state
        return
    with start_server(config or ServeConfig(), registry, evaluator) as server:
        yield server.state
