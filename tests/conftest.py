"""Shared fixtures: isolated user state, the embedded base model, real LoRA adapters, one vLLM server."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lorastack.models import BaseModel, resolve_base_model
from lorastack.testing import make_random_adapter


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu are skipped, and say so, where no CUDA GPU is visible (CI has none)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own registry home; the converted model cache is shared (it is rebuildable)."""
    home = tmp_path / "lorastack-home"
    monkeypatch.setenv("LORASTACK_HOME", str(home))
    return home


@pytest.fixture
def one_chat(tmp_path: Path) -> Path:
    """A JSONL file of one valid conversation: for configs that need data.path but never read it."""
    path = tmp_path / "one_chat.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    return path


@pytest.fixture(scope="session")
def base_model() -> BaseModel:
    return resolve_base_model(None)


@pytest.fixture(scope="session")
def base_shapes(base_model: BaseModel) -> dict:
    return base_model.weight_shapes()


@pytest.fixture(scope="session")
def make_adapter(base_model: BaseModel, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build (once per arguments) a real PEFT LoRA adapter on the embedded model, with random weights."""
    made: dict[tuple, Path] = {}

    def make(rank: int = 8, targets: tuple[str, ...] = ("q_proj", "v_proj"), seed: int = 0) -> Path:
        key = (rank, targets, seed)
        if key not in made:
            out = tmp_path_factory.mktemp(f"adapter-r{rank}-s{seed}")
            made[key] = make_random_adapter(base_model.path, out, rank, targets, seed)
        return made[key]

    return make


@pytest.fixture
def adapter_copy(make_adapter: Callable[..., Path], tmp_path: Path) -> Path:
    """A private, writable copy of a small valid adapter, for tests that damage it."""
    dest = tmp_path / "adapter"
    shutil.copytree(make_adapter(), dest)
    return dest


JOBS_RECIPE = Path(__file__).parent / "data" / "jobs_tiny.yaml"
"""What the session server's fine-tuning jobs train with: a few seconds a step on a 2-core CPU."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerHandle:
    """The session's vLLM server and its registry; ``restart`` stops it and starts it again."""

    def __init__(self, home: Path) -> None:
        from lorastack.serve.config import ServeConfig
        from lorastack.serve.registry import Registry

        self.registry = Registry(home)
        self.config = ServeConfig(port=free_port(), max_loras=4, demo_adapter=False, jobs_recipe=JOBS_RECIPE)
        self.server = None

    def start(self) -> None:
        from lorastack.cli import _agent_evaluator, _data_check  # the ones the CLI root hands `lorastack serve`
        from lorastack.serve.server import start_server

        self.server = start_server(self.config, self.registry, evaluator=_agent_evaluator, data_check=_data_check)

    def restart(self) -> None:
        self.server.stop()
        self.start()

    @property
    def state(self):
        return self.server.state

    @property
    def vllm(self):
        """vLLM itself behind the front door (with the private key only the front door knows)."""
        return self.server.front_door.vllm

    def openai(self):
        from openai import OpenAI

        return OpenAI(base_url=f"{self.state.url}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory, base_model: BaseModel) -> Iterator[ServerHandle]:
    """One real vLLM (CPU build) server for the whole test session, with its own registry."""
    handle = ServerHandle(tmp_path_factory.mktemp("server-home"))
    handle.start()
    try:
        yield handle
    finally:
        if handle.server is not None:
            handle.server.stop()
