"""Sweeps: expanding ``config.sweep`` into points, naming their directories, grouping them.

``config.sweep`` is a tuple of entries, combined as a cartesian product:

- ``('model.depth', (2, 4, 8))``: one field and its values;
- ``(('fl.local_epochs', 'num_rounds'), ((1, 40), (8, 5)))``: fields that move together.

Each point is a whole config (validated) with a name such as ``depth-4_mode-fl``: the last part of
each swept field and its value. Names are directory names that always stay inside the workdir:
characters other than letters, digits and ``._+=-`` become ``_``, long names are cut and given a
hash, and two values that would share a name are told apart by a hash of the value.

Points that differ only in fields the compiled round reads from its state (:data:`TRACED`: the
seed, the client and server optimizers' hyper-parameters, the algorithm's coefficients) form a
group that shares one compiled program, its members stacked on a leading sweep axis
(``config.sweep_axis``; :func:`sweep_groups`). Fields that change shapes or the program (depth,
width, model, client count, mode, algorithm, ...) form groups that run one after another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import pathlib
import re

import ml_collections

from fedjax_deep.config import ConfigError, get_field, set_field, validate

MAX_NAME = 200  # bytes; file systems allow 255 per path component


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name ('' for a config without a sweep) and its config."""

    name: str
    config: ml_collections.ConfigDict


def entry_fields(entry) -> tuple[str, ...]:
    """The fields a sweep entry sets: ``('model.depth',)`` or the tuple of fields moving together."""
    return (entry[0],) if isinstance(entry[0], str) else tuple(entry[0])


def _check_entry(c: ml_collections.ConfigDict, entry) -> None:
    ok = (
        isinstance(entry, tuple | list)
        and len(entry) == 2
        and (
            isinstance(entry[0], str)
            or (
                isinstance(entry[0], tuple | list)
                and entry[0]
                and all(isinstance(f, str) for f in entry[0])
            )
        )
        and isinstance(entry[1], tuple | list)
        and len(entry[1]) >= 1
    )
    if not ok:
        raise ConfigError(
            "sweep",
            entry,
            "each entry must be ('dotted.field', (value, ...)) or "
            "(('field.a', 'field.b'), ((a1, b1), (a2, b2), ...)) for fields that move together",
        )
    fields = entry_fields(entry)
    if not isinstance(entry[0], str):
        for value in entry[1]:
            if not (isinstance(value, tuple | list) and len(value) == len(fields)):
                raise ConfigError("sweep", value, f"give one value per field of {fields}")
    for field in fields:
        if field == "sweep":
            raise ConfigError("sweep", field, "a sweep cannot sweep itself")
        try:
            get_field(c, field)
        except KeyError:
            raise ConfigError("sweep", field, "names no config field") from None


def _component(field: str, value) -> str:
    text = f"{field.rsplit('.', 1)[-1]}-{value}"
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", text)


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def point_name(assignments) -> str:
    """A safe directory name for ``[(field, value), ...]``: no separators, at most 200 bytes."""
    name = "_".join(_component(f, v) for f, v in assignments)
    if len(name.encode()) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "-" + _hash(repr(assignments))
    return name


def expand(config: ml_collections.ConfigDict) -> list[Point]:
    """The sweep's points; a config without a sweep is one unnamed point.

    Validates the config, every entry and every point. Raises :class:`ConfigError`.
    """
    validate(config)
    if not config.sweep:
        return [Point("", config)]
    entries = []
    for entry in config.sweep:
        _check_entry(config, entry)
        fields = entry_fields(entry)
        values = entry[1] if not isinstance(entry[0], str) else [(v,) for v in entry[1]]
        entries.append([tuple(zip(fields, v, strict=True)) for v in values])
    points, names = [], {}
    for combo in itertools.product(*entries):
        assignments = [pair for group in combo for pair in group]
        point = ml_collections.ConfigDict(config.to_dict())
        for field, value in assignments:
            try:
                set_field(point, field, value)
            except ConfigError as e:
                raise ConfigError("sweep", value, f"a value of {field}: {e.fix}") from None
        with point.unlocked():
            point.sweep = ()
        try:
            validate(point)
        except ConfigError as e:
            where = ", ".join(f"{f}={v!r}" for f, v in assignments)
            raise ConfigError(e.field, e.value, f"{e.fix} (at the sweep point {where})") from None
        name = point_name(assignments)
        if name in names:
            if names[name] == repr(assignments):
                raise ConfigError("sweep", config.sweep, f"the point {name} appears twice")
            name = f"{name[: MAX_NAME - 9]}-{_hash(repr(assignments))}"
        names[name] = repr(assignments)
        points.append(Point(name, point))
    return points


def point_dir(workdir: pathlib.Path, name: str) -> pathlib.Path:
    """The directory of the point ``name`` (the workdir itself for a config without a sweep)."""
    path = workdir / name if name else workdir
    if name and (pathlib.Path(name).name != name or name in (".", "..")):
        raise ValueError(f"sweep point name {name!r} is not a plain directory name")
    return path


# Fields whose values reach the compiled round only through its state (arrays that a sweep stacks),
# never as constants of the program: points differing only in these can share one program.
# (Momentum 0 drops the momentum buffer: such points still compile apart, by shape.)
TRACED = (
    "seed",
    "client_opt.learning_rate",
    "client_opt.momentum",
    "client_opt.weight_decay",
    "server_opt.learning_rate",
    "server_opt.momentum",
    "server_opt.b1",
    "server_opt.b2",
    "server_opt.eps",
    "algorithm.mu",
    "algorithm.alpha",
)


def sweep_groups(points: list[Point]) -> list[list[Point]]:
    """Points that differ only in :data:`TRACED` fields, in sweep order: the candidates for one
    compiled program (they share it when their state shapes also agree)."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        config = json.loads(point.config.to_json_best_effort())
        for field in TRACED:
            *path, leaf = field.split(".")
            node = config
            for part in path:
                node = node[part]
            node[leaf] = None
        groups.setdefault(json.dumps(config, sort_keys=True), []).append(point)
    return list(groups.values())
