"""The run-file format: the names of a run directory's files and how they are read back.

Plain JSON and NumPy-free Python, no JAX: what :mod:`fedjax_deep.analysis` reads runs with, and what
:mod:`fedjax_deep.runlog` (the writer, its lock and its resume rules) reads them with too. The table
of files and when each is written is in :mod:`fedjax_deep.runlog`.

- ``config.json``: the resolved config (a sweep's root holds the base config and its ``sweep``);
- ``run_info.json``: dataset, model size, layer order, ``S`` and ``B``, execution;
- ``metrics.jsonl``: one JSON object per round, ``{"round": r, "<metric path>": value, ...}``;
- ``summary.json``: written when the run ends (absent: the run stopped or is unfinished);
- ``stopped.json``: the round and the line of a run that stopped on non-finite values.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

from fedjax_deep.errors import WorkdirError

CONFIG = "config.json"
RUN_INFO = "run_info.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
RESUME_LOG = "resume_log.jsonl"
STOPPED = "stopped.json"
FILES = (CONFIG, RUN_INFO, METRICS, SUMMARY, RESUME_LOG, STOPPED)


def read_json(path: str | os.PathLike, *, required: str = "") -> dict | None:
    """A JSON object file; None if absent, or a :class:`WorkdirError` saying why it is
    ``required`` (and for a file that is not a readable JSON object)."""
    path = pathlib.Path(path)
    if not path.exists():
        if required:
            raise WorkdirError(f"{path} is missing, so {required}")
        return None
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    except (OSError, ValueError) as e:
        raise WorkdirError(
            f"{path} cannot be read ({type(e).__name__}: {str(e)[:100]}); restore it or pass "
            "another --workdir"
        ) from None


def read_rows(path: str | os.PathLike, *, allow_cut_last: bool = True) -> list[dict]:
    """``metrics.jsonl``'s rows (``[]`` if absent); a last line cut by a crash is dropped, any other
    bad line is a :class:`WorkdirError`."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("round"), int):
                raise ValueError("no round")
            rows.append(row)
        except ValueError:
            if i == len(lines) - 1 and allow_cut_last:
                break  # the row a crash cut in half: its round is not checkpointed
            raise WorkdirError(
                f"{path}: line {i + 1} is not a metrics row; restore the file or pass "
                "another --workdir"
            ) from None
    return rows


def read_run(run_dir: str | os.PathLike, *, finished: bool = True) -> dict:
    """A run's files: ``config``, ``run_info``, ``summary``, ``rows``; ``stopped`` (no summary: it
    stopped on non-finite values, by its ``stopped.json`` or, for a run written before that file
    existed, a non-finite training loss in its last row) and ``unfinished`` (no summary and not
    stopped: still training, interrupted, or being extended; its rows so far are in ``rows``).

    ``finished=True`` (reports of finished runs): every JSON file is required. ``finished=False``
    (a sweep read back whole, points that stopped on non-finite values included): only
    ``config.json`` is; ``summary`` is None for a run that did not finish, and ``run_info`` is
    required only of a run that did. A last metrics row cut by a crash is dropped; a missing or
    unreadable required file is a :class:`WorkdirError` naming it.
    """
    d = pathlib.Path(run_dir)
    why = "the run cannot be reported; rerun its command to finish it"
    config = read_json(d / CONFIG, required=why)
    summary = read_json(d / SUMMARY, required=why if finished else "")
    run_info = read_json(d / RUN_INFO, required=why if finished or summary is not None else "")
    rows = read_rows(d / METRICS)
    stopped = summary is None and (
        (d / STOPPED).exists() or (bool(rows) and not _finite(rows[-1].get("train/loss", 0.0)))
    )
    return {"config": config, "run_info": run_info or {}, "summary": summary, "rows": rows,
            "stopped": stopped, "unfinished": summary is None and not stopped}  # fmt: skip


def _finite(value) -> bool:
    """A metrics value that is a finite number (JSON writes non-finite ones as NaN/Infinity or
    null)."""
    return isinstance(value, int | float) and math.isfinite(value)


def read_config(directory: str | os.PathLike) -> dict:
    """A run's or a sweep's ``config.json`` (a :class:`WorkdirError` if missing or unreadable)."""
    why = "it holds no run or sweep; pass the directory given to --workdir"
    return read_json(pathlib.Path(directory) / CONFIG, required=why)
