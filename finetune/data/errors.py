"""The error every data problem raises: it names the file and line (or dataset row) and what to fix."""

from __future__ import annotations

from lorastack.errors import LorastackError


class DataError(LorastackError):
    """Training data the user must fix: a malformed row, a missing file, a template that cannot mask it."""
