"""Reading sweeps back: their runs, the fields that tell runs apart, and each arm's role.

One reader for every analysis: :func:`read_sweep` returns a sweep's root config and every point
(the finished ones and those that stopped on non-finite values); :func:`field_value` reads a
dotted field of a run's ``config.json``. A run made before a field existed has no such key; its
value is then the caller's ``defaults`` (the config system's defaults, which this package does not
import: the command line passes them), never a guess.

Arms are named by **role** (:func:`role`, :func:`arm_names`):

- ``"FL"``: ``mode='fl'``, the federated arm;
- ``"CL"``: ``mode='centralized'`` at FL's batch size: one learner seeing the examples of a round in
  as many more steps;
- ``"steps-matched CL"``: ``mode='centralized'`` at a larger batch than FL's (the clients' batches
  together, ``C x B``): one learner taking a client's number of sequential steps a round;
- ``"null"``: ``mode='independent'``, K SGD runs from one initialization, never averaged (E7).

Where two arms share a role, the values of the fields that tell them apart follow it:
``"FL (name=fedprox)"``. A run's file format is :mod:`fedjax_deep.runfiles`'s.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from fedjax_deep.errors import InputError
from fedjax_deep.runfiles import CONFIG, read_config, read_run

FL, CL, STEPS_MATCHED_CL, NULL = "FL", "CL", "steps-matched CL", "null"
REFERENCE_ROLES = (CL, STEPS_MATCHED_CL)  # the arms every other arm's gap is measured against
_RAISE = object()


def parse_reference(text: str) -> dict:
    """``'mode=centralized,fl.batch_size=36'`` -> ``{'mode': 'centralized', 'fl.batch_size': '36'}``
    (values compare as strings): the reference arm of :func:`fedjax_deep.analysis.compare.compare`."""
    pairs = [part.partition("=") for part in text.split(",")]
    if not text or not all(f.strip() and v.strip() for f, _, v in pairs):
        raise ValueError("use FIELD=VALUE[,FIELD=VALUE], e.g. mode=centralized")
    return {f.strip(): v.strip() for f, _, v in pairs}


def field_value(
    config: Mapping, field: str, defaults: Mapping[str, object] | None = None, missing=_RAISE
):
    """``field`` (dotted: ``'model.depth'``) of a run's config. A field the config lacks (the run
    predates it) reads ``defaults[field]`` (a flat ``{field: value}``; tuples as lists, as JSON
    holds them), else ``missing`` where given, else a ``KeyError`` naming the field."""
    node = config
    try:
        for part in field.split("."):
            node = node[part]
        return node
    except (KeyError, TypeError):
        pass
    if defaults is not None and field in defaults:
        value = defaults[field]
        return list(value) if isinstance(value, tuple) else value
    if missing is not _RAISE:
        return missing
    raise KeyError(
        f"{field!r} is not in a run's {CONFIG} (a run made before the field existed): pass the "
        "config defaults (defaults=...) or leave the field out"
    )


def matches(config: Mapping, wanted: Mapping[str, object], defaults=None) -> bool:
    """Whether a run's config holds every ``field=value`` of ``wanted`` (compared as strings)."""
    return all(
        str(field_value(config, f, defaults, missing=None)) == str(v) for f, v in wanted.items()
    )


# -- reading --------------------------------------------------------------------------------------


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[dict, list[dict]]:
    """A sweep's root config and every point with a ``config.json``, in name order: each
    :func:`fedjax_deep.runfiles.read_run` (``config``, ``run_info``, ``summary``, ``rows``,
    ``stopped``) with its ``name`` (the point's directory name). Points that stopped on non-finite
    values are included (they have rows but no summary). A single run's directory is an
    :class:`~fedjax_deep.errors.InputError`."""
    sweep_dir = pathlib.Path(sweep_dir)
    config = read_config(sweep_dir)
    if not config.get("sweep"):
        raise InputError(f"{sweep_dir} holds a single run, not a sweep; compare and report read "
                         "a sweep's workdir (one trained with --config.sweep)")  # fmt: skip
    runs = []
    for path in sorted(p.parent for p in sweep_dir.glob(f"*/{CONFIG}")):
        run = read_run(path, finished=False)
        lacks = [k for k in ("seed", "mode") if k not in run["config"]]
        if lacks:
            raise InputError(f"{path / CONFIG} holds no {lacks[0]}: it is not a run's config; "
                             "restore it, or move the point's directory out of the sweep")  # fmt: skip
        runs.append({"name": path.name, **run})
    return config, runs


def sweep_entries(sweep_config: Mapping) -> list[list[str]]:
    """The fields of each of a sweep's entries (``[['model.depth'], ['mode', 'fl.batch_size']]``)."""
    return [
        [fields] if isinstance(fields, str) else list(fields)
        for fields, _ in sweep_config.get("sweep") or ()
    ]


def read_sweeps(sweep_dirs) -> tuple[list[str], list[dict]]:
    """One sweep's directory or several read together: their swept fields (in the order they first
    appear) and every run of them (:func:`read_sweep`)."""
    if isinstance(sweep_dirs, str | bytes | os.PathLike) or not isinstance(sweep_dirs, Sequence):
        sweep_dirs = [sweep_dirs]
    fields, runs = [], []
    for sweep_dir in sweep_dirs:
        sweep_config, sweep_runs = read_sweep(sweep_dir)
        runs += sweep_runs
        for entry in sweep_entries(sweep_config):
            fields += [f for f in entry if f not in fields]
    return fields, runs


def curve(rows: Sequence[Mapping], key: str = "eval/accuracy") -> tuple[np.ndarray, np.ndarray]:
    """``(rounds [E], values [E])`` of the rows that hold ``key`` (rounds in order)."""
    pairs = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
    if not pairs:
        return np.zeros(0, int), np.zeros(0)
    rounds, values = zip(*pairs, strict=True)
    return np.asarray(rounds, int), np.asarray(values, float)


def accuracy_at(rows: Sequence[Mapping], index: int) -> float | None:
    """Test accuracy after the last round (``index=-1``) or after round 1 (``index=0``; None when
    round 1 was not evaluated)."""
    rounds, values = curve(rows)
    if not len(values) or (index == 0 and rounds[0] != 1):
        return None
    return float(values[index])


def check_writable(directory: pathlib.Path, names: Sequence[str], fix: str) -> None:
    """An :class:`~fedjax_deep.errors.InputError` naming the path unless every file ``names``
    can be written in ``directory`` (made if missing): checked before an analysis writes its
    first file, so that a refused one writes none."""
    import tempfile

    for name in names:
        if (directory / name).is_dir():
            raise InputError(f"{directory / name} is a directory, so the analysis cannot write "
                             f"its file there; {fix}")  # fmt: skip
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise InputError(f"{directory} cannot be written ({e.strerror or e}); {fix}") from None


# -- names ----------------------------------------------------------------------------------------


def short_names(fields: Sequence[str]) -> list[str]:
    """Each dotted field's last part, or the whole field where two last parts clash
    (``algorithm.name`` and ``server_opt.name``)."""
    shorts = [f.rsplit(".", 1)[-1] for f in fields]
    return [
        f if shorts.count(short) > 1 else short for f, short in zip(fields, shorts, strict=True)
    ]


def sort_key(value):
    """Numbers in order, then labels with their numbers compared as numbers (depth=8 before 16)."""
    if isinstance(value, int | float):
        return (0, value, "")
    parts = re.split(r"(-?\d+\.?\d*)", str(value))
    return (1, 0, [(0, float(p), "") if re.fullmatch(r"-?\d+\.?\d*", p) else (1, 0, p)
                   for p in parts if p])  # fmt: skip


def reference_batch(configs: Sequence[Mapping]) -> int | None:
    """The batch size of plain CL: the smallest ``fl.batch_size`` of the FL runs (of the
    centralized runs where there is no FL run); None without either."""
    for mode in ("fl", "centralized"):
        sizes = [field_value(c, "fl.batch_size", missing=None) for c in configs
                 if c.get("mode") == mode]  # fmt: skip
        sizes = [s for s in sizes if s is not None]
        if sizes:
            return min(sizes)
    return None


def role(config: Mapping, batch: int | None) -> str:
    """A run's role (FL, CL, steps-matched CL, null) from its config; ``batch`` is
    :func:`reference_batch` of the runs compared with it."""
    mode = config.get("mode")
    if mode == "independent":
        return NULL
    if mode == "centralized":
        size = field_value(config, "fl.batch_size", missing=None)
        larger = batch is not None and size is not None and size > batch
        return STEPS_MATCHED_CL if larger else CL
    return FL


def arm_names(arms: Mapping[Hashable, tuple[str, Mapping[str, object]]]) -> dict:
    """``{arm: name}`` from ``{arm: (role, {field: value})}``: the role alone, or where several
    arms share it, the role and the values of the fields that tell those arms apart
    (``'CL (width=16)'``, ``'FL (name=fedprox)'``)."""
    by_role: dict = {}
    for arm, (r, _) in arms.items():
        by_role.setdefault(r, []).append(arm)
    names = {}
    for r, members in by_role.items():
        if len(members) == 1:
            names[members[0]] = r
            continue
        fields = list(dict.fromkeys(f for arm in members for f in arms[arm][1]))
        differ = [f for f in fields if len({str(arms[arm][1].get(f)) for arm in members}) > 1]
        for arm in members:
            values = ", ".join(f"{short}={arms[arm][1].get(f)}"
                               for f, short in zip(differ, short_names(differ), strict=True))  # fmt: skip
            names[arm] = f"{r} ({values})"
    return names
