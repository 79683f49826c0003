"""The one typed config of the agent (``lorastack ask`` / ``chat``). Field docstrings are the --help text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AgentConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    base_url: str | None = None
    """Any OpenAI-compatible endpoint (e.g. http://host:8000/v1). Unset: the running lorastack server, found
    through LORASTACK_HOME/server.json (written by `lorastack serve`), or a temporary one on the embedded default
    model."""
    api_key: str | None = None
    """API key for --base-url (default: $LORASTACK_API_KEY or $LORASTACK_ADMIN_KEY for a lorastack server,
    else $OPENAI_API_KEY)."""
    model: str | None = None
    """Model name at the endpoint. Unset: the lorastack server's default alias (the bundled tools-demo adapter
    on the embedded model), else its base model; at a foreign --base-url, the endpoint's first model."""
    adapter: str | None = None
    """A lorastack adapter to answer with (its registered name); the same as --model NAME."""
    tool_mode: Literal["auto", "native", "react"] = "auto"
    """native: OpenAI tool calling; react: tools described in the prompt (Thought/Action/Observation), for
    endpoints without tool calling; auto: native where the endpoint supports it, else react."""
    max_steps: int = Field(6, ge=1)
    """Most model calls for one question."""
    timeout: float = Field(300, gt=0)
    """Seconds for one question, model and tools together."""
    max_tokens: int = Field(512, ge=1)
    """Longest model reply per step, in tokens."""
    temperature: float = Field(0.0, ge=0)
    """Sampling temperature (0: deterministic)."""
    search: Literal["auto", "web", "local"] = "auto"
    """Search backend: web (DuckDuckGo), local (an index built with `lorastack index DIR`), or auto: local when
    that index exists and holds documents, else web."""
    index: Path | None = None
    """Local search index folder (default: the one `lorastack index` writes)."""

