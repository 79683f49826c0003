"""The bundled demo adapter: tools-demo teaches the embedded SmolLM2-135M-Instruct to call its tools.

It ships inside the package (``lorastack/adapters/tools-demo``, with its training card) so that a fresh
install answers its first question with a model that uses the calculator and search. The first server
start on the embedded model registers it and points the ``default`` alias at it (so the front door
loads it), once: after
that the registry is the user's, and removing or re-pointing it is respected.
"""

from __future__ import annotations

from pathlib import Path

import lorastack
from lorastack.models import EMBEDDED_NAME, BaseModel
from lorastack.access import DEFAULT_ALIAS
from lorastack.serve.registry import AdapterVersion, Registry

DEMO_NAME = "tools-demo"
DEMO_DIR = Path(lorastack.__file__).resolve().parent / "adapters" / DEMO_NAME
_INSTALLED = "demo_adapter_installed"


def demo_adapter_dir() -> Path:
    return DEMO_DIR


def install_demo_adapter(registry: Registry, base: BaseModel) -> AdapterVersion | None:
    """Register, mark loaded and alias the demo adapter the first time the embedded model is served.

    Returns the new version, or None when there is nothing to do (another base model, already done once,
    or an install without the bundled files).
    """
    if base.name != EMBEDDED_NAME or registry.setting(_INSTALLED) or not (DEMO_DIR / "adapter_config.json").is_file():
        return None
    adapter = registry.register(DEMO_NAME, DEMO_DIR, base, base.weight_shapes())
    if registry.alias(DEFAULT_ALIAS) is None:  # the front door loads aliased versions itself
        registry.set_alias(DEFAULT_ALIAS, adapter)
    registry.set_setting(_INSTALLED, adapter.ref)
    return adapter
