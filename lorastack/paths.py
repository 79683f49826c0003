"""Where lorastack keeps its state.

``LORASTACK_HOME`` holds the adapter registry and store (user data that must survive).
``LORASTACK_CACHE`` holds things that can be rebuilt, such as the converted default model.
Both default to the platform's user directories.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home_dir() -> Path:
    """Directory for the registry database and the adapter store."""
    env = os.environ.get("LORASTACK_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("lorastack"))


def cache_dir() -> Path:
    """Directory for rebuildable artefacts (converted models)."""
    env = os.environ.get("LORASTACK_CACHE")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("lorastack"))
