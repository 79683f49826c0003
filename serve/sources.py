"""Where an adapter comes from: a local folder, ``hf://ORG/REPO[@REVISION][/SUBFOLDER]`` or ``s3://BUCKET/PREFIX``.

The fetching itself is :mod:`lorastack.sources` (base models use it too); this is its adapter use: only the
adapter's own files are fetched, and an S3 download lands in ``LORASTACK_HOME/downloads`` until the store holds it.
"""

from __future__ import annotations

from pathlib import Path

from lorastack.serve.compatibility import CONFIG_FILE, WEIGHTS_FILE

from lorastack import sources
from lorastack.sources import Fetched, HubSource, Origin, Progress, S3Source, SourceError, discard, is_remote, parse

__all__ = ["FETCHED", "Fetched", "HubSource", "Origin", "Progress", "S3Source", "SourceError", "discard", "fetch",
           "is_remote", "parse"]  # fmt: skip

FETCHED = (CONFIG_FILE, WEIGHTS_FILE, "README.md", "training_card.json", "adapter_model.bin")
"""The files of an adapter taken from a remote source (pickle weights too, so that the check can name them)."""


def fetch(source: str, downloads: Path, progress: Progress | None = None) -> Fetched:
    """Make an adapter ``source`` local: a folder as it is, a remote source downloaded (or found in its cache)."""
    return sources.fetch(source, downloads, progress, files=FETCHED, required=CONFIG_FILE, what="adapter")
