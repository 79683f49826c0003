"""The CLI: --help everywhere, one clear line (no traceback) for user mistakes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from lorastack.cli import app
from lorastack.testing import one_line_error


def _all_commands(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            found += _all_commands(sub, (*path, name))
    return found


COMMANDS = _all_commands(get_command(app))


def test_the_commands_the_design_card_names_exist() -> None:
    assert {("serve",), ("ask",), ("adapters", "register"), ("adapters", "list"), ("adapters", "load")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "lorastack")
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def _lorastack(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lorastack.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_unknown_adapter_is_one_line() -> None:
    line = one_line_error(_lorastack("adapters", "show", "nope"))
    assert "No adapter 'nope' in the registry. See lorastack adapters list." in line


def test_register_bad_adapter_is_one_line(tmp_path) -> None:
    (tmp_path / "adapter_config.json").write_text("{")
    line = one_line_error(_lorastack("adapters", "register", "x", str(tmp_path)))
    assert "is not valid JSON" in line and "Re-save" in line


def test_invalid_serve_option_is_one_line() -> None:
    line = one_line_error(_lorastack("serve", "--max-lora-rank", "20"))
    assert "--max-lora-rank: max_lora_rank (20) must be one of" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [(("--composed-share", "2"), "--composed-share: Input should be less than or equal to 1"),
     (("--train", "0"), "--train: Input should be greater than or equal to 1")],  # a field under another flag
)
def test_out_of_range_option_is_one_line_naming_it(tmp_path, args: tuple[str, ...], expected: str) -> None:
    line = one_line_error(_lorastack("data", "synth", str(tmp_path / "out"), *args))
    assert expected in line
    assert not (tmp_path / "out").exists()


def test_wide_only_share_with_another_variety_is_refused(tmp_path) -> None:
    line = one_line_error(_lorastack("data", "synth", str(tmp_path / "out"), "--composed-share", "0"))
    assert "only variety wide reads composed_share; add --variety wide" in line
    assert not (tmp_path / "out").exists()


def test_port_in_use_is_refused_before_starting_vllm() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(_lorastack("serve", "--port", str(port)))
    assert f"Port {port} on 127.0.0.1 is already in use" in line
    assert f"--port {port + 1}" in line


def test_vllm_missing_is_one_line(tmp_path) -> None:
    """A venv without vLLM: `serve` says how to install it instead of failing on import."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # A sitecustomize that hides vllm from importlib (find_spec returns None for it).
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vllm' or name.startswith('vllm.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(shadow))
    line = one_line_error(_lorastack("serve", env=env))
    assert "vLLM is not installed" in line and "lorastack[cpu]" in line


def test_bad_training_config_is_one_line() -> None:
    """Checked before torch loads: no library warnings in front of the error."""
    line = one_line_error(_lorastack("train", "lora.r=8"))
    assert "Invalid training config: data: Field required" in line
