"""The project's error types: one line each, and the exit code the command line gives them.

They sit at the bottom of the import graph (no JAX, nothing of the package) so that library code
(models, data, fl) can raise them without importing the config system.

Bad input is one family, :class:`InputError`: the command line catches that one class, prints its
one line and exits with 2. A library function called with an argument outside its domain by other
code (``choose_execution('pmap')``) raises a plain ``ValueError``: that is a bug of its caller, not
bad input.

| error | raised for | exit code |
|---|---|---|
| :class:`InputError` (a ``ValueError``) | the family of bad input below | 2 |
| :class:`FieldError` | a bad value of a named setting (``model.depth=12: ...``), raised by the libraries | 2 |
| :class:`ConfigError` | the same, named as a config field (``config.model.depth=12: ...``); the config layer raises it and turns a library's ``FieldError`` into it | 2 |
| :class:`PartitionError` | a client partition that cannot be built from the data (a ``FieldError``: it names the knob) | 2 |
| :class:`DataError` | a dataset that is missing, incomplete or malformed | 2 |
| :class:`WorkdirError` | a workdir that cannot host the run: locked, another experiment, missing or damaged run files | 2 |
| :class:`RunFault` (a ``RuntimeError``) | a fault mid-run: a file or checkpoint that cannot be written, non-finite values | 1 |
| :class:`Interrupted` | Ctrl-C or SIGTERM; the message says the last checkpointed round and how to resume | 130 / 143 |
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """Bad input (a setting, a dataset, a workdir): one line saying what and how to fix it."""


class FieldError(InputError):
    """A bad value of a named setting: names the field, the value and the fix, in one line."""

    prefix = ""

    def __init__(self, field: str, value: Any, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"{self.prefix}{field}={_short_repr(value)}: {fix}")


class ConfigError(FieldError):
    """A bad config field: names the field (``config.<field>``), the value and the fix."""

    prefix = "config."


class PartitionError(FieldError):
    """A partition that cannot be built from the given data (names the knob to change)."""


class DataError(InputError):
    """A dataset that is missing, incomplete or malformed (one line naming it and the fix)."""


class WorkdirError(InputError):
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
