"""The project's error types: one line each, and the exit code the command line gives them.

They sit at the bottom of the import graph so that library code (models, data) can raise them
without importing the config system:

| error | raised for | exit code |
|---|---|---|
| :class:`FieldError` (a ``ValueError``) | a bad value of a named setting; the config layer turns it into ``ConfigError`` | 2 |
| :class:`WorkdirError` (a ``ValueError``) | a workdir that cannot host the run: locked, another experiment, missing or damaged run files | 2 |
| :class:`RunFault` (a ``RuntimeError``) | a fault mid-run: a file or checkpoint that cannot be written, non-finite values | 1 |
| :class:`Interrupted` | Ctrl-C or SIGTERM; the message says the last checkpointed round and how to resume | 130 / 143 |
"""

from __future__ import annotations

from typing import Any


class FieldError(ValueError):
    """A bad value of a named setting: names the field, the value and the fix, in one line."""

    prefix = ""

    def __init__(self, field: str, value: Any, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"{self.prefix}{field}={_short_repr(value)}: {fix}")


class WorkdirError(ValueError):
    """The workdir cannot host this run (one line naming the file or holder and what to do)."""


class RunFault(RuntimeError):
    """A fault mid-run (one line: what, where, the last good checkpoint, what to do)."""


class Interrupted(Exception):
    """The run was stopped by a signal after its last checkpoint; ``signum`` says which."""

    def __init__(self, message: str, signum: int):
        self.signum = signum
        super().__init__(message)


def _short_repr(value: Any, limit: int = 120) -> str:
    """``repr`` cut to one readable line (an override may be megabytes long)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # deeply nested values; ints too long for repr
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 5] + "[...]"
