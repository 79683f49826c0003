"""The bundled demo adapter: tools-demo teaches the embedded SmolLM2-135M-Instruct to call its tools.

It ships inside the package (``lorastack/adapters/tools-demo``, with its training card; the base model names it
as its :attr:`~lorastack.models.BaseModel.bundled_adapter`) so that a fresh install answers its first question
with a model that uses the calculator and search. The first server start on that model registers it and points
the ``default`` alias at it (so the front door loads it) and marks it loaded (so clients can also call it by its
own name, ``model="tools-demo"``), once: after that the registry is the user's, and
removing or re-pointing it is respected. A lorastack upgrade that ships new bundled weights registers them as the
next version at the next start and moves what still points at the old bundled version (the default alias, the
loaded version of its name); whatever the user re-pointed or removed stays as it is.
"""

from __future__ import annotations

from pathlib import Path

from lorastack.access import DEFAULT_ALIAS
from lorastack.models import BUNDLED_ADAPTERS, BaseModel
from lorastack.errors import NotFound
from lorastack.serve.compatibility import CONFIG_FILE, WEIGHTS_FILE
from lorastack.serve.registry import AdapterVersion, Registry, adapter_sha256

DEMO_NAME = "tools-demo"
_INSTALLED = "demo_adapter_installed"


def demo_adapter_dir() -> Path:
    return BUNDLED_ADAPTERS / DEMO_NAME


def install_demo_adapter(registry: Registry, base: BaseModel) -> AdapterVersion | None:
    """Register, mark loaded and alias the base model's bundled adapter the first time that model is served, or
    when an upgrade ships new bundled weights.

    Returns the new version, or None when there is nothing to do (a model without one, already done for these
    weights, the user removed the installed one, or an install without the bundled files).
    """
    folder = base.bundled_adapter
    if folder is None or not all((folder / f).is_file() for f in (CONFIG_FILE, WEIGHTS_FILE)):
        return None
    previous = None
    if installed := registry.setting(_INSTALLED):
        try:
            previous = registry.get(installed)
        except NotFound:  # the user removed it: not brought back
            return None
        if previous.sha256 == adapter_sha256(folder):
            return None
    adapter = registry.register(folder.name, folder, base, base.weight_shapes())
    # What still follows the bundled adapter moves to the new version: on the first start, nothing set yet.
    if registry.loaded_version(adapter.name) == (previous.version if previous else None):
        registry.mark_loaded(adapter)  # served under its own name too (model="tools-demo")
    default = registry.alias(DEFAULT_ALIAS)
    if (default.ref if default else None) == (previous.ref if previous else None):
        registry.set_alias(DEFAULT_ALIAS, adapter)  # the front door loads aliased versions itself
    registry.set_setting(_INSTALLED, adapter.ref)
    return adapter
