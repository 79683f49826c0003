"""The one typed config of the search tool. Field docstrings are the CLI's ``--help`` text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lorastack.paths import cache_dir, home_dir


class SearchConfig(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    backend: Literal["auto", "web", "local"] = "auto"
    """What the search tool searches: web (DuckDuckGo, through the ddgs package), local (your documents,
    indexed with `lorastack index DIR`), or auto: local when that index exists and holds documents, else web."""
    max_results: int = Field(4, ge=1, le=10)
    """How many results to return."""
    index_dir: Path | None = None
    """Local index folder. Unset: LORASTACK_HOME/index (one index; every folder you index goes into it)."""
    timeout: float = Field(5, gt=0)
    """Seconds to wait for one web request."""
    retries: int = Field(2, ge=0)
    """Extra web attempts after a rate limit or timeout, waiting backoff, 2*backoff, 4*backoff ... seconds."""
    backoff: float = Field(1, ge=0)
    """Seconds to wait before the first retry (doubled each time)."""
    total_timeout: float = Field(20, gt=0)
    """Give up on the web after this many seconds in all, retries included (at least timeout when only that is
    set)."""
    cache_ttl: float = Field(86400, ge=0)
    """Seconds a web result stays in the cache (LORASTACK_CACHE/search); 0 = no cache."""
    web_engines: str = "duckduckgo"
    """ddgs engines to ask, comma-separated (duckduckgo, bing, brave, google, mojeek, wikipedia, yahoo,
    yandex), or auto for all of them (spreads the load, so one engine's rate limit matters less)."""
    region: str = "us-en"
    """Web search region, e.g. us-en, uk-en, de-de, wt-wt (no region)."""

    @model_validator(mode="before")
    @classmethod
    def _total_fits_a_longer_timeout(cls, data: Any) -> Any:
        """A timeout above the default total limit, with no total limit given, raises the total to it: asking
        for a 30 s request means waiting 30 s."""
        if isinstance(data, dict) and data.get("timeout") is not None and data.get("total_timeout") is None:
            default = cls.model_fields["total_timeout"].default
            try:
                if float(data["timeout"]) > default:
                    data = {**data, "total_timeout": float(data["timeout"])}
            except (TypeError, ValueError):
                pass  # the field's own validation reports a timeout that is not a number
        return data

    @model_validator(mode="after")
    def _one_attempt_fits(self) -> SearchConfig:
        if self.timeout > self.total_timeout:
            raise ValueError(f"timeout ({self.timeout:g}) must be <= total_timeout ({self.total_timeout:g})")
        return self

    @property
    def index_path(self) -> Path:
        """The local index folder (resolved now, so LORASTACK_HOME is read at call time)."""
        return (self.index_dir.expanduser() if self.index_dir else home_dir() / "index").absolute()

    @property
    def cache_path(self) -> Path:
        """The web result cache (an SQLite file)."""
        return cache_dir() / "search" / "web.sqlite"
