"""What a new user reads when the output is piped: whole option names in --help, whole adapter names in tables,
and what an aliased version's "loaded" column says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [("serve",), ("train",), ("ask",), ("eval",), ("adapters", "promote"), ("data", "synth")]


def _lorastack(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    if home is not None:
        env["LORASTACK_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "lorastack.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_piped_help_keeps_option_names_whole(path: tuple[str, ...]) -> None:
    """Regression: piped --help was laid out for 80 columns and cut names short (--tensor-parallel-si…)."""
    result = _lorastack(*path, "--help")
    assert result.returncode == 0 and "…" not in result.stdout, result.stdout


def test_piped_adapter_list_keeps_names_and_says_aliased_versions_are_served(
    tmp_path: Path, adapter_copy: Path
) -> None:
    """Regression: piped tables cut names ("tools…"), and a version served through an alias showed a blank
    "loaded" column."""
    home = tmp_path / "home"
    name = "support-assistant-for-long-names"
    assert _lorastack("adapters", "register", name, str(adapter_copy), home=home).returncode == 0
    assert _lorastack("adapters", "promote", f"{name}@v1", "--alias", "support", home=home).returncode == 0
    listing = _lorastack("adapters", "list", home=home)
    assert listing.returncode == 0, listing.stderr
    assert "…" not in listing.stdout
    assert "via alias" in listing.stdout
    assert name in listing.stdout
