"""Reading a user's documents as plain text, and cutting them into chunks a search result can show.

Formats: .txt, .md/.markdown, .rst (as they are) and .html/.htm (tags stripped). Chunks follow paragraphs
(blank-line separated) and hold about ``TARGET_WORDS`` words; a longer paragraph is cut by words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".html", ".htm"})
MAX_FILE_BYTES = 5_000_000
"""Larger files are skipped: they are rarely notes, and one would dominate the index."""
TARGET_WORDS = 200
MAX_WORDS = 300

_MD_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


@dataclass(frozen=True)
class Chunk:
    section: str
    """The heading the chunk falls under ('' before the first one)."""
    text: str


def is_document(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES and not path.name.startswith(".")


def decode_document(path: Path, data: bytes) -> str:
    """The text of a file's bytes: undecodable bytes become U+FFFD, HTML loses its tags."""
    text = data.decode("utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        text = _html_text(text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def document_title(text: str, fallback: str) -> str:
    """The first non-empty line, without Markdown heading marks; ``fallback`` for a file without text."""
    for line in text.splitlines():
        line = line.strip()
        if line and not _RST_UNDERLINE.match(line):
            heading = _MD_HEADING.match(line)
            return (heading.group(1) if heading else line)[:120]
    return fallback


def chunk_document(text: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    section, words, chunk_section = "", [], ""
    for paragraph in _paragraphs(text):
        heading, paragraph = _split_heading(paragraph)
        if heading is not None:
            section = heading
        # The heading itself is left out of the text: it is the chunk's section, and searched as such.
        para_words = paragraph.split()
        # Close the chunk before a heading or before it would grow past MAX_WORDS.
        if words and (heading is not None or len(words) + len(para_words) > MAX_WORDS or len(words) >= TARGET_WORDS):
            chunks.append(Chunk(chunk_section, " ".join(words)))
            words = []
        if not words:
            chunk_section = section
        while len(para_words) > MAX_WORDS:
            chunks.append(Chunk(section, " ".join(para_words[:MAX_WORDS])))
            para_words = para_words[MAX_WORDS:]
        words += para_words
    if words:
        chunks.append(Chunk(chunk_section, " ".join(words)))
    return chunks


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _split_heading(paragraph: str) -> tuple[str | None, str]:
    """A paragraph's heading (Markdown ``#`` or reStructuredText underlined), and the rest of it."""
    lines = paragraph.splitlines()
    if match := _MD_HEADING.match(lines[0]):
        return match.group(1), "\n".join(lines[1:])
    if len(lines) >= 2 and _RST_UNDERLINE.match(lines[1]) and not _RST_UNDERLINE.match(lines[0]):
        return lines[0].strip(), "\n".join(lines[2:])
    if len(lines) >= 3 and _RST_UNDERLINE.match(lines[0]) and _RST_UNDERLINE.match(lines[2]):  # overlined title
        return lines[1].strip(), "\n".join(lines[3:])
    return None, paragraph


class _TextExtractor(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template"}
    _BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6", "title", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6") and not self._skipping:
            self.parts.append("# ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(self._skipping - 1, 0)
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    # Whitespace inside a block is layout, not structure.
    return "\n\n".join(" ".join(p.split()) for p in "".join(extractor.parts).split("\n\n") if p.strip())
