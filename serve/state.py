"""How lorastack commands find the running server.

``lorastack serve`` writes ``server.json`` in ``LORASTACK_HOME`` while it runs, so that other commands
(``adapters load``, ``ask``) find the server, its base model and the rank it accepts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lorastack.models import BaseModel
from lorastack.paths import home_dir
from lorastack.serve.client import ServerClient

STATE_FILE = "server.json"


@dataclass(frozen=True)
class ServerState:
    """What a running server tells other lorastack commands about itself."""

    url: str
    pid: int
    base_name: str
    base_path: str
    base_source: str
    device: str
    max_lora_rank: int
    max_loras: int
    tool_call_parser: str | None = None
    upstream_url: str = ""
    """vLLM's own address behind the front door (``url``); empty for states written before the front door."""
    engine_pid: int = 0
    """vLLM's pid (the leader of its process group); 0 when attached to an external vLLM."""

    @property
    def base(self) -> BaseModel:
        return BaseModel(self.base_name, self.base_path, self.base_source)

    @property
    def client(self) -> ServerClient:
        return ServerClient(self.url)


def state_path(home: Path | None = None) -> Path:
    return (home or home_dir()) / STATE_FILE


def current_server(home: Path | None = None) -> ServerState | None:
    """The running server recorded in ``LORASTACK_HOME``, or None if there is none (or it died)."""
    path = state_path(home)
    try:
        state = ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return state if state.client.healthy() else None


def write_state(path: Path, state: ServerState) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(path)
