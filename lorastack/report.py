"""How library code reports progress: through ``logging``, rendered by the CLI.

Library modules never print. They log what a user waits for at INFO (``logger.info("Converting ...")``) and
details at DEBUG; :func:`show_progress` (called by the CLI root) prints lorastack's INFO records as plain lines on
stderr, and DEBUG too with ``--verbose``. A program that imports lorastack configures logging as it likes.
"""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

_STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "red"}


class ConsoleHandler(logging.Handler):
    """lorastack's records as the user sees them: the message alone (warnings marked), never as markup."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.levelno <= logging.DEBUG:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            style = _STYLES.get(record.levelno, "dim" if record.levelno <= logging.DEBUG else "")
            prefix = "warning: " if record.levelno == logging.WARNING else ""
            self.console.print(Text(prefix + message, style=style), highlight=False, soft_wrap=True)
        except Exception:  # a broken console must not break the command
            self.handleError(record)


def show_progress(verbose: bool = False, console: Console | None = None) -> None:
    """Print lorastack's progress (and with ``verbose`` its details) on stderr."""
    logger = logging.getLogger("lorastack")
    for handler in list(logger.handlers):
        if isinstance(handler, ConsoleHandler):
            logger.removeHandler(handler)
    handler = ConsoleHandler(console or Console(stderr=True, file=sys.stderr))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def folding_table(*columns: str) -> Table:
    """A table whose cells fold rather than cut names short ("tools…") when the output is narrow or piped."""
    return Table(*(Column(name, overflow="fold") for name in columns))
