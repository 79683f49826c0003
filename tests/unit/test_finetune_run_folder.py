"""A run folder is one run's while it trains: a second run is refused, the lock goes with the run, and a file
system without locks trains on with a warning rather than failing."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

import pytest

from lorastack.errors import LorastackError
from lorastack.finetune.trainer import _run_folder_held


def test_a_second_run_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with _run_folder_held(out):
        assert out.is_dir()
        with pytest.raises(LorastackError, match="in use: another training run is writing to it") as refused:
            with _run_folder_held(out):
                pass
        assert "set output_dir to a new folder" in refused.value.hint
    with _run_folder_held(out):  # let go when the first run returned
        pass


def test_a_file_system_without_locks_trains_unguarded_with_a_warning(tmp_path, monkeypatch, caplog) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING), _run_folder_held(tmp_path / "run"):
        pass
    assert "cannot be locked" in caplog.text and "would not be refused" in caplog.text


@pytest.mark.parametrize("where", ["afile", "afile/run"])
def test_an_output_dir_that_cannot_be_a_folder_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(LorastackError, match=r"cannot be a run folder \((it is a file|Not a directory)\)"):
        with _run_folder_held(tmp_path / where):
            pass
