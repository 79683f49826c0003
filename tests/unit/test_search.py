"""The search tool: a real bm25s index over a generated corpus, the real ddgs client offline, and the web
retry/cache logic driven by a scripted client below it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import primp
import pytest
import typer
from ddgs.exceptions import DDGSException, RatelimitException
from typer.testing import CliRunner

from lorastack.errors import NotFound
from lorastack.tools.cli import add_commands
from lorastack.tools.search import LocalIndex, SearchConfig, SearchResult, SearchUnavailable, format_results, make_search_tool
from lorastack.tools.search.cache import ResultCache
from lorastack.tools.search.documents import MAX_WORDS, chunk_document
from lorastack.tools.search.web import web_search

FACTS = {
    "geography/zorbia.md": "# Zorbia\n\nZorbia is a small island nation.\n\n## Capital\n\nThe capital of Zorbia is "
    "Quillport, a harbour town on the river Vell.\n",
    "cooking.txt": "Kitchen notes\n\nBoil the fettuccine for nine minutes in salted water.\n\nRest the dough an hour.",
    "birds.html": "<html><head><title>Night birds</title><style>p {color: red}</style></head><body>"
    "<h1>Owls</h1><p>The tawny owl hunts voles at night &amp; sleeps by day.</p></body></html>",
    "astronomy.rst": "Moons\n=====\n\nEuropa is an icy moon of Jupiter with a salty ocean under its crust.\n",
    "cars.md": "# Engines\n\nA diesel engine ignites fuel by compression, without a spark plug.\n",
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "lorastack-cache"
    monkeypatch.setenv("LORASTACK_CACHE", str(cache))
    return cache


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for relpath, text in FACTS.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    (root / ".git").mkdir()
    (root / ".git" / "notes.md").write_text("hidden folders are not indexed: Quillport")
    (root / "image.png").write_bytes(b"\x89PNG not a document, Quillport")
    return root


@pytest.fixture
def index(tmp_path: Path) -> LocalIndex:
    return LocalIndex(tmp_path / "index")


def _sources(results: list[SearchResult]) -> list[str]:
    return [r.source for r in results]


# -- the local index ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is the capital of Zorbia?", "geography/zorbia.md"),
        ("how long to boil fettuccine", "cooking.txt"),
        ("which owl hunts voles", "birds.html"),
        ("icy moon of Jupiter ocean", "astronomy.rst"),
        ("diesel compression ignition", "cars.md"),
    ],
)
def test_the_file_with_the_fact_ranks_first(corpus: Path, index: LocalIndex, query: str, expected: str) -> None:
    index.update(corpus)
    results = index.search(query, k=3)
    assert results[0].source == expected, results
    assert results[0].path == corpus / expected
    assert results[0].score > (results[1].score if len(results) > 1 else 0)


def test_results_carry_title_section_and_a_snippet_of_the_text(corpus: Path, index: LocalIndex) -> None:
    index.update(corpus)
    (zorbia,) = index.search("Quillport harbour", k=1)
    assert zorbia.title == "Zorbia › Capital"
    assert "The capital of Zorbia is Quillport" in zorbia.snippet
    assert "#" not in zorbia.snippet
    (owl,) = index.search("tawny owl", k=1)
    assert owl.title == "Night birds › Owls"
    assert owl.snippet == "The tawny owl hunts voles at night & sleeps by day."  # no tags, no CSS, entities decoded


def test_hidden_folders_and_other_file_types_are_left_out(corpus: Path, index: LocalIndex) -> None:
    report = index.update(corpus)
    assert report.added == len(FACTS)
    assert _sources(index.search("Quillport", k=10)) == ["geography/zorbia.md"]


def test_a_query_sharing_no_word_with_the_documents_finds_nothing(corpus: Path, index: LocalIndex) -> None:
    index.update(corpus)
    assert index.search("xylophone quantum", k=3) == []


def test_update_rereads_only_what_changed(corpus: Path, index: LocalIndex) -> None:
    first = index.update(corpus)
    assert (first.added, first.updated, first.removed, first.unchanged, first.read) == (5, 0, 0, 0, 5)
    assert first.chunks == 6  # zorbia.md has two sections, the others one each

    changed = corpus / "cooking.txt"
    changed.write_text("Kitchen notes\n\nSteam the artichokes for forty minutes.")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))  # a distinct mtime
    (corpus / "new.md").write_text("# Tea\n\nOolong tea is partly oxidised.")
    (corpus / "cars.md").unlink()
    touched = corpus / "astronomy.rst"  # same bytes, new mtime: read to compare, but not re-chunked
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))

    second = index.update(corpus)
    assert (second.added, second.updated, second.removed, second.unchanged) == (1, 1, 1, 3)
    assert second.read == 3  # new.md, cooking.txt, astronomy.rst; the two untouched files were not opened
    assert second.chunks == second.total_chunks == 6  # cars.md's chunk went, new.md's came

    assert _sources(index.search("oolong tea oxidised", k=1)) == ["new.md"]
    assert _sources(index.search("artichokes", k=1)) == ["cooking.txt"]
    assert index.search("fettuccine", k=3) == []  # the old text of the changed file is gone
    assert index.search("diesel", k=3) == []  # and so is the deleted file

    third = index.update(corpus)
    assert (third.added, third.updated, third.removed, third.unchanged, third.read) == (0, 0, 0, 5, 0)


def test_a_new_process_uses_the_saved_index_without_rereading(corpus: Path, index: LocalIndex) -> None:
    index.update(corpus)
    script = (
        "import json, sys; from pathlib import Path; from lorastack.tools.search import LocalIndex\n"
        "index = LocalIndex(Path(sys.argv[1]))\n"
        "hits = index.search('capital of Zorbia', k=1)\n"
        "report = index.update(Path(sys.argv[2]))\n"
        "print(json.dumps({'source': hits[0].source, 'read': report.read, 'unchanged': report.unchanged}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(index.path), str(corpus)],
        capture_output=True, text=True, timeout=60, check=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert json.loads(out.stdout.splitlines()[-1]) == {"source": "geography/zorbia.md", "read": 0, "unchanged": 5}


def test_two_folders_share_one_index_and_can_be_removed(corpus: Path, index: LocalIndex, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "zorbia.md").write_text("# Zorbia trivia\n\nZorbia's national bird is the tawny owl.")
    index.update(corpus)
    index.update(other)
    assert index.folders() == sorted([corpus.resolve(), other.resolve()])
    assert {r.path for r in index.search("Zorbia", k=5)} >= {corpus / "geography/zorbia.md", other / "zorbia.md"}

    report = index.remove_folder(other)
    assert report.removed == 1
    assert all(r.path != other / "zorbia.md" for r in index.search("Zorbia", k=5))
    with pytest.raises(NotFound, match="is not in the index"):
        index.remove_folder(other)


def test_indexing_a_missing_folder_says_what_to_do(index: LocalIndex, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        index.update(tmp_path / "no-such-folder")
    assert "no-such-folder does not exist." in caught.value.message
    assert "lorastack index DIR" in caught.value.hint


def test_long_documents_are_chunked_by_paragraph() -> None:
    paragraphs = [f"Paragraph {i} " + "filler " * 80 for i in range(10)]
    chunks = chunk_document("\n\n".join(paragraphs))
    assert len(chunks) >= 3
    assert all(len(c.text.split()) <= MAX_WORDS for c in chunks)
    assert " ".join(c.text for c in chunks).split() == "\n\n".join(paragraphs).split()  # nothing lost or doubled
    one_huge = chunk_document("word " * (3 * MAX_WORDS))
    assert [len(c.text.split()) for c in one_huge] == [MAX_WORDS] * 3


# -- the tool ----------------------------------------------------------------------------------------------


def test_local_tool_answers_with_numbered_sources(corpus: Path, tmp_path: Path) -> None:
    config = SearchConfig(backend="local", index_dir=tmp_path / "index", max_results=3)
    LocalIndex(config.index_path).update(corpus)
    tool = make_search_tool(config)
    assert tool.name == "search"
    assert set(tool.args) == {"query"}
    assert "user's own documents" in tool.description
    observation = tool.invoke({"query": "capital of Zorbia"})
    assert observation.startswith("1. Zorbia › Capital\n")
    assert "Quillport" in observation
    assert "source: geography/zorbia.md" in observation
    assert "Nothing in the user's documents matches 'xylophone'" in tool.invoke({"query": "xylophone"})


def test_searching_without_an_index_is_an_observation_not_a_crash(tmp_path: Path) -> None:
    tool = make_search_tool(SearchConfig(backend="local", index_dir=tmp_path / "never-built"))
    observation = tool.invoke({"query": "anything"})
    assert observation.startswith(f"No local search index at {tmp_path / 'never-built'}.")
    assert "Build it with: lorastack index DIR" in observation


def test_searching_an_empty_index_is_an_observation(tmp_path: Path) -> None:
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    config = SearchConfig(backend="local", index_dir=tmp_path / "index")
    assert LocalIndex(config.index_path).update(empty).chunks == 0
    observation = make_search_tool(config).invoke({"query": "anything"})
    assert "holds no documents" in observation
    assert "lorastack index DIR" in observation


def test_the_local_tool_sees_a_reindex_without_being_rebuilt(corpus: Path, tmp_path: Path) -> None:
    config = SearchConfig(backend="local", index_dir=tmp_path / "index")
    LocalIndex(config.index_path).update(corpus)
    tool = make_search_tool(config)
    assert "Nothing" in tool.invoke({"query": "oolong"})
    (corpus / "tea.md").write_text("# Tea\n\nOolong tea is partly oxidised.")
    LocalIndex(config.index_path).update(corpus)  # e.g. `lorastack index DIR` while the agent runs
    assert "source: tea.md" in tool.invoke({"query": "oolong"})


def test_observations_stay_short() -> None:
    results = [SearchResult(f"Title {i} " * 20, "word " * 500, f"https://example.org/{i}") for i in range(5)]
    text = format_results(results)
    assert len(text) <= 1500
    assert [line.split(".")[0] for line in text.splitlines() if not line.startswith(" ")] == ["1", "2", "3", "4", "5"]
    assert text.count("source: https://example.org/") == 5


# -- the web -----------------------------------------------------------------------------------------------


def test_web_search_offline_is_a_quick_clear_observation() -> None:
    """This machine has no internet: the real ddgs client fails, and the tool says so, fast."""
    tool = make_search_tool(SearchConfig(backend="web"))
    assert "DuckDuckGo" in tool.description
    started = time.monotonic()
    observation = tool.invoke({"query": "capital of Australia"})
    elapsed = time.monotonic() - started
    if observation.startswith("1. "):
        pytest.skip("this machine can reach the web")
    assert observation.startswith("Web search is unavailable (no network"), observation
    assert "lorastack index DIR" in observation
    assert elapsed < 5


def test_web_search_through_an_unreachable_proxy_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, on any machine: ddgs reads DDGS_PROXY, and nothing listens on port 9 of localhost."""
    monkeypatch.setenv("DDGS_PROXY", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(SearchUnavailable, match=r"Web search is unavailable \(no network: ConnectError\)"):
        web_search("capital of Australia", SearchConfig())
    assert time.monotonic() - started < 5


class ScriptedDDGS:
    """Stands in for ddgs.DDGS (below web_search): raises or answers as scripted, and records the calls."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls: list[dict] = []
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> ScriptedDDGS:  # the client factory
        self.timeouts.append(timeout)
        return self

    def text(self, query: str, **kwargs: object) -> list[dict]:
        self.calls.append({"query": query, **kwargs})
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


ANSWER = [
    {"title": "Canberra - Wikipedia", "href": "https://en.wikipedia.org/wiki/Canberra", "body": "Canberra is it."},
    {"title": "Australia", "href": "https://example.org/au", "body": "Australia is a country."},
]


def test_rate_limits_are_retried_with_backoff_then_cached() -> None:
    ddgs = ScriptedDDGS(RatelimitException("202 Ratelimit"), RatelimitException("202 Ratelimit"), ANSWER)
    clock = FakeTime()
    config = SearchConfig(retries=3, backoff=1.5, max_results=2)

    results = web_search("Capital of Australia?", config, client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)
    assert clock.sleeps == [1.5, 3.0]
    assert len(ddgs.calls) == 3
    assert ddgs.calls[0] == dict(query="Capital of Australia?", max_results=2, backend="duckduckgo", region="us-en")
    assert results == [
        SearchResult("Canberra - Wikipedia", "Canberra is it.", "https://en.wikipedia.org/wiki/Canberra"),
        SearchResult("Australia", "Australia is a country.", "https://example.org/au"),
    ]

    again = web_search("  capital   of australia", config, client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)
    assert again == results
    assert len(ddgs.calls) == 3  # answered from the cache
    assert (Path(os.environ["LORASTACK_CACHE"]) / "search" / "web.sqlite").is_file()


def test_a_rate_limit_that_outlasts_the_retries_is_a_clear_error() -> None:
    ddgs = ScriptedDDGS(*[RatelimitException("202 Ratelimit")] * 3)
    clock = FakeTime()
    with pytest.raises(SearchUnavailable, match=r"rate-limited .*3 attempts") as caught:
        web_search("q", SearchConfig(retries=2), client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)
    assert "Wait a minute" in caught.value.hint
    assert clock.sleeps == [1, 2]


def test_retries_stop_at_the_total_time_limit() -> None:
    ddgs = ScriptedDDGS(*[RatelimitException("202 Ratelimit")] * 10)
    clock = FakeTime()
    config = SearchConfig(retries=9, backoff=1, timeout=2, total_timeout=5)
    with pytest.raises(SearchUnavailable):
        web_search("q", config, client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)
    assert clock.sleeps == [1, 2]  # a third wait (4 s) would end past the 5 s limit
    assert ddgs.timeouts == [2, 2, 2]


def test_an_empty_answer_is_retried_and_not_cached() -> None:
    """ddgs 9 turns DuckDuckGo's rate-limit page (HTTP 202) into a bare "No results found."."""
    no_results = DDGSException("No results found.")
    ddgs = ScriptedDDGS(no_results, ANSWER)
    clock = FakeTime()
    config = SearchConfig(retries=1)
    assert len(web_search("q", config, client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)) == 2

    ddgs = ScriptedDDGS(no_results, [], no_results)
    assert web_search("nothing here", SearchConfig(retries=2), client_factory=ddgs, sleep=clock.sleep) == []
    ddgs = ScriptedDDGS(ANSWER)
    assert len(web_search("nothing here", SearchConfig(retries=2), client_factory=ddgs, sleep=clock.sleep)) == 2


def test_a_hung_request_is_cut_off() -> None:
    release = threading.Event()

    class Hung:
        def text(self, query: str, **kwargs: object) -> list[dict]:
            release.wait(30)
            return ANSWER

    config = SearchConfig(timeout=0.5, total_timeout=1, retries=0, cache_ttl=0)
    started = time.monotonic()
    try:
        with pytest.raises(SearchUnavailable, match="timed out"):
            web_search("q", config, client_factory=lambda timeout: Hung())
    finally:
        release.set()
    assert time.monotonic() - started < 2


def _as_ddgs_raises(error: BaseException) -> DDGSException:
    """``error`` as DDGS.text raises it: its HTTP client wraps it (``raise DDGSException(msg) from error``), then
    DDGS wraps the engine's error again (``DDGSException(err)``)."""
    client_error = DDGSException(f"{type(error).__name__}: {error!r}")
    client_error.__cause__ = error
    return DDGSException(client_error)


@pytest.mark.parametrize(
    "error",
    [
        primp.DNSError("dns error: failed to lookup address information"),
        primp.DNSTimeoutError("dns error: lookup timed out"),
        primp.ConnectError("tcp connect error: Connection refused"),
        socket.gaierror(-3, "Temporary failure in name resolution"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_no_network_is_recognised_by_the_error_class(error: BaseException) -> None:
    ddgs = ScriptedDDGS(_as_ddgs_raises(error))
    with pytest.raises(SearchUnavailable, match=r"Web search is unavailable \(no network: ") as caught:
        web_search("q", SearchConfig(retries=2, cache_ttl=0), client_factory=ddgs, sleep=FakeTime().sleep)
    assert "Check the internet connection" in caught.value.hint
    assert len(ddgs.calls) == 1  # no network is not retried


def test_a_class_named_like_a_network_error_is_not_one() -> None:
    """Pins a fix: "no network" was decided by class NAME, so any error class called ConnectError or
    NetworkError (a page parser's, a plugin's) told the user to check their internet connection."""
    lookalike = type("ConnectError", (Exception,), {})("the results page changed")
    ddgs = ScriptedDDGS(_as_ddgs_raises(lookalike))
    with pytest.raises(SearchUnavailable, match=r"Web search failed \(ConnectError: the results page changed\)"):
        web_search("q", SearchConfig(retries=2, cache_ttl=0), client_factory=ddgs, sleep=FakeTime().sleep)
    assert len(ddgs.calls) == 1


@pytest.mark.parametrize(
    "error", [primp.TimeoutError("operation timed out"), TimeoutError("timed out")], ids=lambda e: type(e).__module__
)
def test_a_wrapped_timeout_is_retried_as_a_timeout(error: BaseException) -> None:
    clock = FakeTime()
    ddgs = ScriptedDDGS(_as_ddgs_raises(error), ANSWER)
    results = web_search("q", SearchConfig(retries=1), client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)
    assert len(results) == 2 and clock.sleeps == [1]

    ddgs = ScriptedDDGS(_as_ddgs_raises(error), _as_ddgs_raises(error))
    with pytest.raises(SearchUnavailable, match=r"timed out \(2 attempts"):
        web_search("other", SearchConfig(retries=1), client_factory=ddgs, sleep=clock.sleep, clock=clock.clock)


def test_cached_answers_expire(tmp_path: Path) -> None:
    now = [1000.0]
    cache = ResultCache(tmp_path / "c.sqlite", ttl=60, clock=lambda: now[0])
    cache.put("k", [SearchResult("t", "s", "https://example.org")])
    now[0] += 59
    assert cache.get("k") == [SearchResult("t", "s", "https://example.org")]
    now[0] += 2
    assert cache.get("k") is None


# -- the CLI -----------------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    add_commands(app)
    return app


def test_index_command_reports_what_it_did(cli: typer.Typer, corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["index", str(corpus), "--index", str(tmp_path / "idx")])
    assert first.exit_code == 0, first.output
    assert "5 added, 0 updated, 0 removed, 0 unchanged; 6 chunks (6 in the index)" in first.output
    (corpus / "cars.md").unlink()
    second = runner.invoke(cli, ["index", str(corpus), "--index", str(tmp_path / "idx")])
    assert "0 added, 0 updated, 1 removed, 4 unchanged; 5 chunks" in second.output

    found = runner.invoke(cli, ["search", "tawny owl", "--backend", "local", "--index", str(tmp_path / "idx"), "-n1"])
    assert found.exit_code == 0, found.output
    assert found.output.startswith("1. Night birds › Owls\n")
    assert str(corpus / "birds.html") in found.output.replace("\n", "")  # rich wraps long paths


def test_index_command_uses_lorastack_home_by_default(cli: typer.Typer, corpus: Path, _isolated_home: Path) -> None:
    result = CliRunner().invoke(cli, ["index", str(corpus)])
    assert result.exit_code == 0, result.output
    assert (_isolated_home / "index" / "index.sqlite").is_file()


def test_index_command_on_a_missing_folder_raises_the_typed_error(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["index", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert isinstance(result.exception, NotFound)  # lorastack's CLI root prints it as one line


def test_search_options_come_from_the_config(cli: typer.Typer, corpus: Path, tmp_path: Path) -> None:
    """`search` and `index` take their options from SearchConfig: its defaults and field docs, its validation."""
    runner = CliRunner()
    help_text = runner.invoke(cli, ["search", "--help"], env={"COLUMNS": "200"}).output
    assert "How many results to return. [default: (4)]" in help_text and "--max-results  -n" in help_text
    assert runner.invoke(cli, ["index", str(corpus), "--index", str(tmp_path / "idx")]).exit_code == 0

    # A request timeout above the default total limit raises the total limit (it used to be done by hand here).
    local = ["--backend", "local", "--index", str(tmp_path / "idx")]
    found = runner.invoke(cli, ["search", "owl", *local, "--timeout", "30"])
    assert found.exit_code == 0, found.output
    assert SearchConfig(timeout=30).total_timeout == 30 and SearchConfig(timeout=3).total_timeout == 20
    with pytest.raises(ValueError, match=r"timeout \(30\) must be <= total_timeout \(10\)"):
        SearchConfig(timeout=30, total_timeout=10)

    too_many = runner.invoke(cli, ["search", "owl", "--backend", "local", "-n", "11"])
    assert too_many.exit_code != 0 and "--max-results: Input should be less than or equal to 10" in str(too_many.exception)


# -- auto: the local index when there is one, else the web --------------------------------------------------


@pytest.fixture
def choices() -> list[str]:
    """The INFO lines that say which backend auto chose (read from the module's logger itself: the CLI root makes
    the lorastack logger stop propagating, so the root's caplog may not see them)."""
    import logging

    records: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("lorastack.tools.search.tool")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_auto_is_the_default_of_the_agent_and_of_search() -> None:
    from lorastack.agent.config import AgentConfig

    assert SearchConfig().backend == "auto" and AgentConfig().search == "auto"


def test_auto_searches_the_web_without_an_index_and_says_so_once(tmp_path: Path, choices: list[str]) -> None:
    from lorastack.tools.search.tool import DESCRIPTIONS

    tool = make_search_tool(SearchConfig(index_dir=tmp_path / "never-built"))
    tool.invoke({"query": "capital of Australia"})
    tool.invoke({"query": "capital of Peru"})

    assert tool.description == DESCRIPTIONS["web"]
    assert choices == [f"Searching the web (--search auto: no local index with documents at {tmp_path / 'never-built'})."]
    assert not (tmp_path / "never-built").exists()  # looking does not create an index


def test_auto_searches_the_local_index_when_it_holds_documents(
    corpus: Path, tmp_path: Path, choices: list[str]
) -> None:
    config = SearchConfig(index_dir=tmp_path / "index")
    LocalIndex(config.index_path).update(corpus)

    tool = make_search_tool(config)
    observation = tool.invoke({"query": "which owl hunts voles"})
    tool.invoke({"query": "capital of Zorbia"})

    assert "user's own documents" in tool.description and "source: birds.html" in observation
    assert choices == [f"Searching the local index at {tmp_path / 'index'} (--search auto: it holds documents)."]


def test_auto_takes_an_empty_or_unreadable_index_for_none(tmp_path: Path) -> None:
    from lorastack.tools.search import resolve_backend

    empty = tmp_path / "empty-folder"
    empty.mkdir()
    LocalIndex(tmp_path / "index").update(empty)
    assert resolve_backend(SearchConfig(index_dir=tmp_path / "index")).backend == "web"
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "index.sqlite").write_text("not a database")
    assert resolve_backend(SearchConfig(index_dir=tmp_path / "garbled")).backend == "web"
    assert resolve_backend(SearchConfig(backend="local", index_dir=tmp_path / "none")).backend == "local"


def test_the_agent_finds_the_index_lorastack_index_builds(cli: typer.Typer, corpus: Path, _isolated_home: Path) -> None:
    """`lorastack index DIR` then `lorastack ask` (default --search auto) searches those documents, no flag needed."""
    from lorastack.agent.config import AgentConfig
    from lorastack.agent.session import build_tools

    assert CliRunner().invoke(cli, ["index", str(corpus)]).exit_code == 0
    search_tool = next(t for t in build_tools(AgentConfig()) if t.name == "search")
    assert "source: birds.html" in search_tool.invoke({"query": "which owl hunts voles"})
    web_tool = next(t for t in build_tools(AgentConfig(search="web")) if t.name == "search")
    assert "DuckDuckGo" in web_tool.description


def test_the_search_command_searches_auto_by_default(cli: typer.Typer, corpus: Path, _isolated_home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(corpus)]).exit_code == 0
    found = runner.invoke(cli, ["search", "tawny owl", "-n1"])
    assert found.exit_code == 0, found.output
    assert found.output.startswith("1. Night birds › Owls\n")
