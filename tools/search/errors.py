"""What can go wrong in a search, as errors a user (or the agent) can act on."""

from __future__ import annotations

from lorastack.errors import LorastackError, NotFound


class SearchUnavailable(LorastackError):
    """The web search could not be done: no network, a rate limit that outlasted the retries, a timeout."""


class IndexMissing(NotFound):
    """There is no local index yet, or it holds no documents."""
