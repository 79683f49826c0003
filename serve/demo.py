"""The bundled demo adapter: tools-demo teaches the embedded SmolLM2-135M-Instruct to call its tools.

It ships inside the package (``lorastack/adapters/tools-demo``, with its training card; the base model names it
as its :attr:`~lorastack.models.BaseModel.bundled_adapter`) so that a fresh install answers its first question
with a model that uses the calculator and search. The first server start on that model registers it and points
the ``default`` alias at it (so the front door loads it) and marks it loaded (so clients can also call it by its
own name, ``model="tools-demo"``), once: after that the registry is the user's, and
removing or re-pointing it is respected.
"""

from __future__ import annotations

from pathlib import Path

from lorastack.access import DEFAULT_ALIAS
from lorastack.models import BUNDLED_ADAPTERS, BaseModel
from lorastack.serve.registry import AdapterVersion, Registry

DEMO_NAME = "tools-demo"
_INSTALLED = "demo_adapter_installed"


def demo_adapter_dir() -> Path:
    return BUNDLED_ADAPTERS / DEMO_NAME


def install_demo_adapter(registry: Registry, base: BaseModel) -> AdapterVersion | None:
    """Register, mark loaded and alias the base model's bundled adapter the first time that model is served.

    Returns the new version, or None when there is nothing to do (a model without one, already done once,
    or an install without the bundled files).
    """
    folder = base.bundled_adapter
    if folder is None or registry.setting(_INSTALLED) or not (folder / "adapter_config.json").is_file():
        return None
    adapter = registry.register(folder.name, folder, base, base.weight_shapes())
    if registry.loaded_version(adapter.name) is None:  # served under its own name too (model="tools-demo")
        registry.mark_loaded(adapter)
    if registry.alias(DEFAULT_ALIAS) is None:  # the front door loads aliased versions itself
        registry.set_alias(DEFAULT_ALIAS, adapter)
    registry.set_setting(_INSTALLED, adapter.ref)
    return adapter
