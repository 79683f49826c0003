"""Web search through DuckDuckGo (the ``ddgs`` package), with a cache, retries and a hard time limit.

Every way the web can fail (no network, rate limit, timeout, a changed results page) ends as
:class:`SearchUnavailable` with a hint, within ``SearchConfig.total_timeout`` seconds.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol

import primp
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from lorastack.tools.search.cache import ResultCache, cache_key
from lorastack.tools.search.config import SearchConfig
from lorastack.tools.search.errors import SearchUnavailable
from lorastack.tools.search.results import SearchResult, shorten

logger = logging.getLogger(__name__)

_LOCAL_HINT = "or search your own documents instead: lorastack index DIR, then use the local backend."
_NO_NETWORK = (primp.DNSError, primp.ConnectError, socket.gaierror, ConnectionError)
"""Errors (anywhere in the cause chain) that mean the machine cannot reach the internet: primp's (ddgs' HTTP
client; its DNSTimeoutError is a DNSError too) and the standard library's."""
_TIMEOUT = (TimeoutException, primp.TimeoutError, TimeoutError)
"""Errors (anywhere in the cause chain) that mean a request ran out of time: retried like a timeout."""


class TextSearcher(Protocol):
    """What web search needs of ``ddgs.DDGS``."""

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]: ...


ClientFactory = Callable[[float], TextSearcher]


def ddgs_client(timeout: float) -> TextSearcher:
    from ddgs import DDGS

    return DDGS(timeout=timeout)  # type: ignore[arg-type]  # primp takes float seconds


class _NoResults(Exception):
    """ddgs found nothing. Since ddgs 9 this is also how a DuckDuckGo rate limit (HTTP 202) looks: the engine
    drops non-200 answers silently and DDGS raises a bare DDGSException("No results found.")."""


def web_search(
    query: str,
    config: SearchConfig,
    *,
    client_factory: ClientFactory = ddgs_client,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[SearchResult]:
    """Search the web; cached answers younger than ``config.cache_ttl`` come from the cache.

    Retries rate limits, timeouts and empty answers with exponential backoff, within ``config.retries``
    extra attempts and ``config.total_timeout`` seconds. Raises :class:`SearchUnavailable`.
    """
    cache = ResultCache(config.cache_path, config.cache_ttl) if config.cache_ttl > 0 else None
    key = cache_key(query, config.max_results, config.web_engines, config.region)
    if cache is not None and (hit := cache.get(key)) is not None:
        logger.debug("Web search %r answered from the cache", query)
        return hit

    deadline = clock() + config.total_timeout
    delay = config.backoff
    started = clock()
    for attempt in range(1, config.retries + 2):
        try:
            raw = _attempt(client_factory, query, config, min(config.timeout, deadline - clock()))
            break
        except (RatelimitException, TimeoutException, _NoResults) as exc:
            logger.debug("Web search attempt %d for %r: %r", attempt, query, exc)
            if attempt > config.retries or clock() + delay + 0.5 > deadline:
                return _give_up(exc, attempt, clock() - started, config)
        sleep(delay)
        delay *= 2

    results = [
        SearchResult(title=r.get("title") or r["href"], snippet=r.get("body") or "", source=r["href"])
        for r in raw
        if r.get("href")
    ][: config.max_results]
    if cache is not None and results:  # an empty answer may be a rate limit in disguise: never cache it
        cache.put(key, results)
    return results


def _attempt(client_factory: ClientFactory, query: str, config: SearchConfig, limit: float) -> list[dict]:
    """One call of ddgs, cut off after ``limit`` seconds even if ddgs itself hangs (a stuck DNS lookup does)."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            client = client_factory(limit)
            box["value"] = client.text(
                query, max_results=config.max_results, backend=config.web_engines, region=config.region
            )
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    # A daemon thread, so that a hung request never keeps the process alive; it is abandoned, not joined.
    worker = threading.Thread(target=call, name="web-search", daemon=True)
    worker.start()
    worker.join(limit + 0.5)
    if worker.is_alive():
        raise TimeoutException(f"no answer within {limit:g} s")
    if "error" in box:
        _raise_classified(box["error"])
    if not box["value"]:
        raise _NoResults()
    return box["value"]


def _raise_classified(exc: BaseException) -> NoReturn:
    if isinstance(exc, (RatelimitException, TimeoutException)):
        raise exc
    if isinstance(exc, DDGSException) and _root(exc) is exc:  # wraps no engine error: nothing was found
        raise _NoResults() from exc
    cause = _root(exc)
    if any(isinstance(e, _NO_NETWORK) for e in _chain(exc)):
        raise SearchUnavailable(
            f"Web search is unavailable (no network: {type(cause).__name__}).",
            f"Check the internet connection, {_LOCAL_HINT}",
        ) from exc
    if any(isinstance(e, _TIMEOUT) for e in _chain(exc)):
        raise TimeoutException(str(cause)) from exc
    logger.debug("Web search failed", exc_info=exc)
    raise SearchUnavailable(
        f"Web search failed ({type(cause).__name__}: {shorten(str(cause), 150)}).", f"Try again later, {_LOCAL_HINT}"
    ) from exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ddgs passes an engine's error as its first argument, or chains it."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (*e.args, e.__cause__) if isinstance(x, BaseException)]


def _root(exc: BaseException) -> BaseException:
    """The innermost error ``exc`` wraps (primp's, for a network failure)."""
    for _ in range(10):  # wrapped errors nest a few levels deep at most; never loop on a cycle
        inner = next((x for x in (*exc.args, exc.__cause__) if isinstance(x, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc


def _give_up(exc: Exception, attempts: int, seconds: float, config: SearchConfig) -> list[SearchResult]:
    tries = f"{attempts} attempt{'s' if attempts > 1 else ''} in {seconds:.0f} s"
    if isinstance(exc, _NoResults):
        logger.debug("No web results after %s (nothing found, or a silent rate limit)", tries)
        return []
    if isinstance(exc, RatelimitException):
        raise SearchUnavailable(
            f"Web search is rate-limited by the search engine ({tries}).",
            f"Wait a minute and ask again (answers are then cached), {_LOCAL_HINT}",
        ) from exc
    raise SearchUnavailable(
        f"Web search timed out ({tries}, up to {config.timeout:g} s each).",
        f"Check the internet connection or raise the timeout, {_LOCAL_HINT}",
    ) from exc
