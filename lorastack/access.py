"""Who may do what at the front door, and which key lorastack's own commands present.

The rule lives here, in the core, because both sides use it: the front door (``lorastack.serve``) checks keys,
and the agent, the CLI and the promotion's eval present them.
"""

from __future__ import annotations

import os
from enum import StrEnum

DEFAULT_ALIAS = "default"
"""The alias ``ask`` and ``chat`` answer with when no adapter or model is named."""


class Role(StrEnum):
    inference = "inference"
    """Call models: chat, completions, embeddings, /v1/models."""
    admin = "admin"
    """Everything: inference, and managing adapters and the server."""


ENV_KEYS = {"LORASTACK_API_KEY": Role.inference, "LORASTACK_ADMIN_KEY": Role.admin}
"""Environment variables read (at every check) as extra keys, and the role each grants."""


def allows(role: Role | None, needed: Role) -> bool:
    """Whether a key of ``role`` (None: no valid key) may do what ``needed`` guards. Admin may do anything."""
    return role is Role.admin or (role is not None and role == needed)


def env_key(needed: Role) -> str | None:
    """The key from the environment that lorastack's own commands present for a route that needs ``needed``.

    The variable of that role first, then the other one where it is enough: an admin route takes
    ``LORASTACK_ADMIN_KEY`` (an inference key would only get a 401), an inference route ``LORASTACK_API_KEY``,
    else the admin key, which may do inference too.
    """
    ordered = sorted(ENV_KEYS.items(), key=lambda item: item[1] != needed)
    for variable, role in ordered:
        key = (os.environ.get(variable) or "").strip()
        if key and allows(role, needed):
            return key
    return None
