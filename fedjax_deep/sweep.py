"""The sweep axis: points, the groups of points that share one compiled program, member batching.

``config.sweep`` is a tuple of entries, combined as a cartesian product:

- ``('model.depth', (2, 4, 8))``: one field and its values;
- ``(('fl.local_epochs', 'num_rounds'), ((1, 40), (8, 5)))``: fields that move together.

:func:`parse_entries` reads that format (the one place that does); :func:`expand` turns it into
points. Each point is a whole config (validated) with a name such as ``depth-4_mode-fl``: the last
part of each swept field and its value. Names are directory names that always stay inside the
workdir: characters other than letters, digits and ``._+=-`` become ``_``, long names are cut and
given a hash, and two values that would share a name are told apart by a hash of the value.

Points that differ only in fields the compiled round reads from its state (:data:`TRACED`: the
seed, the client and server optimizers' hyper-parameters, the algorithm's coefficients) form a
group (:func:`sweep_groups`) whose members may share one compiled program, stacked on a leading
sweep axis ``[R, ...]`` (``config.sweep_axis``). Fields that change shapes or the program (depth,
width, model, client count, mode, algorithm, ...) form groups that run one after another.
:func:`batches` then splits a group's :class:`Member` records into the :class:`Batch` es that
train together: as many as fit in memory, those whose built state shapes agree. A config without
a sweep is one unnamed point, one member, one batch of ``R = 1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import ml_collections

from fedjax_deep.config import ConfigError, as_field_type, get_field, set_field, validate

if TYPE_CHECKING:  # the records name them; expanding a sweep needs neither JAX nor the runner
    from fedjax_deep.experiment import Experiment, Prepared
    from fedjax_deep.runlog import RunDir

MAX_NAME = 200  # bytes; file systems allow 255 per path component
MAX_POINTS = 100_000  # a sweep larger than this is refused before any point is built


# -- entries and points ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    """One entry of ``config.sweep``, parsed: the fields it sets and, per value, one value for
    each field (a one-field entry's values are 1-tuples)."""

    fields: tuple[str, ...]
    values: tuple[tuple, ...]


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name ('' for a config without a sweep), its config, and
    the ``(field, value)`` pairs the sweep set in it."""

    name: str
    config: ml_collections.ConfigDict
    assignments: tuple[tuple[str, Any], ...] = ()


def parse_entries(config: ml_collections.ConfigDict) -> list[Entry]:
    """``config.sweep`` as :class:`Entry` records, each checked against ``config``'s fields.

    A field may be swept by one entry only, an entry may not list one value twice (``1`` and
    ``1.0`` of a float field are one value), and the number of points (the product of the
    entries' lengths) may not exceed :data:`MAX_POINTS`: each is refused before any point is built.
    Raises :class:`ConfigError` naming ``config.sweep`` and the entry or value at fault."""
    entries = [_parse_entry(config, entry) for entry in config.sweep]
    seen: set[str] = set()
    for entry in entries:
        for field in entry.fields:
            if field in seen:
                raise ConfigError("sweep", field, "is swept by two entries (or twice in one): list "
                                  "all its values in one entry")  # fmt: skip
            seen.add(field)
    total = math.prod(len(e.values) for e in entries)
    if total > MAX_POINTS:
        lengths = " x ".join(str(len(e.values)) for e in entries)
        raise ConfigError("sweep", f"{lengths} = {total} points", f"a sweep holds at most "
                          f"{MAX_POINTS} points: split it into several sweeps")  # fmt: skip
    return entries


def _parse_entry(c: ml_collections.ConfigDict, entry) -> Entry:
    head = entry[0] if isinstance(entry, tuple | list) and entry else None
    ok = (
        isinstance(entry, tuple | list)
        and len(entry) == 2
        and (
            isinstance(head, str)
            or (isinstance(head, tuple | list) and head and all(isinstance(f, str) for f in head))
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
    if isinstance(head, str):
        fields, values = (head,), tuple((v,) for v in entry[1])
    else:
        fields = tuple(head)
        for value in entry[1]:
            if not (isinstance(value, tuple | list) and len(value) == len(fields)):
                raise ConfigError("sweep", value, f"give one value per field of {fields}")
        values = tuple(tuple(v) for v in entry[1])
    for field in fields:
        if field == "sweep":
            raise ConfigError("sweep", field, "a sweep cannot sweep itself")
        try:
            get_field(c, field)
        except KeyError:
            raise ConfigError("sweep", field, "names no config field") from None
    seen: dict[tuple, tuple] = {}
    for value in values:
        try:  # values equal in the field's type are one point, named twice: refuse it
            typed = tuple(as_field_type(c, f, v) for f, v in zip(fields, value, strict=True))
        except ConfigError as e:
            raise ConfigError("sweep", e.value, f"a value of {e.field}: {e.fix}") from None
        if typed in seen:
            raise ConfigError("sweep", value, f"{', '.join(fields)} already lists "
                              f"{_one(seen[typed])}, the same value in the field's type: list it "
                              "once")  # fmt: skip
        seen[typed] = value
    return Entry(fields, values)


def _one(value: tuple):
    return value[0] if len(value) == 1 else value


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
    choices = [[tuple(zip(e.fields, v, strict=True)) for v in e.values]
               for e in parse_entries(config)]  # fmt: skip
    points, names = [], {}
    for combo in itertools.product(*choices):
        assignments = tuple(pair for group in combo for pair in group)
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
        if name in names:  # two values that print alike (parse_entries refused true repeats)
            name = f"{name[: MAX_NAME - 9]}-{_hash(repr(assignments))}"
        names[name] = repr(assignments)
        points.append(Point(name, point, assignments))
    return points


def point_dir(workdir: pathlib.Path, name: str) -> pathlib.Path:
    """The directory of the point ``name`` (the workdir itself for a config without a sweep)."""
    path = workdir / name if name else workdir
    if name and (pathlib.Path(name).name != name or name in (".", "..")):
        raise ValueError(f"sweep point name {name!r} is not a plain directory name")
    return path


def describe(names: list[str], width: int = 80) -> str:
    """Points named for a terminal line of at most ``width`` characters: the name itself, or
    ``'5 points: depth-8_mode-fl ... (+4)'`` (a long first name is cut)."""
    if len(names) == 1:
        return _fit(names[0], width)
    head, more = f"{len(names)} points: ", f" (+{len(names) - 1})"
    room = max(8, width - len(head) - len(more))
    first = names[0] if len(names[0]) + 4 <= room else _fit(names[0], room)
    return head + first + (" ..." if first == names[0] else "") + more


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


# -- groups: points that may share one compiled program -----------------------------------------
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
    "privacy.noise_multiplier",
    "privacy.clip_norm",
    "privacy.target_epsilon",
    "privacy.delta",
    "privacy.adaptive_quantile",
    "privacy.adaptive_lr",
    "privacy.adaptive_count_noise",
)

T = TypeVar("T")  # a Point or a Member: anything with a .config


def sweep_groups(points: list[T]) -> list[list[T]]:
    """Points (or members) that differ only in :data:`TRACED` fields, in sweep order: the
    candidates for one compiled program (they share it when their state shapes also agree)."""
    groups: dict[str, list] = {}
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


# -- members and the batches that train together ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Member:
    """A point ready to train: its name ('' without a sweep), its run directory (locked and
    checked), its config, the harmless config changes since the run it resumes (``{}`` when
    fresh), and its prepared data (``experiment.prepare``)."""

    name: str
    run_dir: RunDir
    config: ml_collections.ConfigDict
    changes: dict
    prepared: Prepared


@dataclasses.dataclass(frozen=True)
class Batch:
    """Members that train together, built: one compiled program advances all of them.

    Attributes:
      members, experiments: ``R`` members and their built experiments, in sweep order.
      execution: how the member axis runs (``'vmap'`` or ``'map'``: :func:`member_execution`);
        None for ``R = 1``: no member axis at all, the very program a run without a sweep
        compiles (so a point alone computes exactly what that run computes).
    """

    members: tuple[Member, ...]
    experiments: tuple[Experiment, ...]
    execution: str | None


def batches(
    members: list[Member],
    build: Callable[[Member], Experiment],
    *,
    free_bytes: int | None,
) -> Iterator[Batch]:
    """A group's members (:func:`sweep_groups`) in the batches that train together.

    At most as many members as fit in ``free_bytes`` (each needs its ``prepared.memory['total']``)
    are built at once; among them, those whose state shapes agree share a program; the rest run in
    further programs of the same shape (the compilation cache loads them). Each member is built
    (``build``) only when its turn comes (its memory, its wall clock). Members with a mesh or
    host-side data, and every member under ``sweep_axis='off'``, run alone (``R = 1``)."""
    if len(members) < 2 or members[0].config.sweep_axis == "off":
        for m in members:
            yield Batch((m,), (build(m),), None)
        return
    need = max(m.prepared.memory["total"] for m in members)
    size = members_that_fit(len(members), need, free_bytes)
    for start in range(0, len(members), size):
        built: dict[str, list] = {}
        for m in members[start : start + size]:
            run = build(m)
            key = _signature(run) if run.mesh is None and not run.on_host else f"alone {m.name}"
            built.setdefault(key, []).append((m, run))
        for pairs in built.values():
            ms, runs = zip(*pairs, strict=True)
            yield Batch(ms, runs, member_execution(ms[0].config) if len(ms) > 1 else None)


def members_that_fit(count: int, need_per_member: int, free_bytes: int | None) -> int:
    """How many members of a group one program may hold: each member's estimated need
    (``experiment.estimate_memory``: under ``vmap`` everything is per member; under ``lax.map``
    that bounds it from above) against 80% of the memory available (all of them when unknown)."""
    if free_bytes is None or need_per_member <= 0:
        return count
    return max(1, min(count, int(free_bytes * 0.8) // need_per_member))


def member_execution(config: ml_collections.ConfigDict) -> str:
    """How the members of a sweep axis run: ``vmap`` (one batched program: GPU/TPU, or
    ``sweep_axis=on``) or ``map`` (``lax.map``: one member after another inside the program, on
    CPU, where a batched program was not faster: benchmarks/bench_sweep.py)."""
    import jax  # here, not above: expanding a sweep needs no JAX

    if config.sweep_axis == "on" or jax.default_backend() != "cpu":
        return "vmap"
    return "map"


def _signature(run: Experiment) -> str:
    """Shapes, dtypes and structure of everything the compiled round and evaluation take, and the
    cadences of the loop: members that agree on it can share one program."""
    import jax

    data, key = run.round_inputs(0)
    tree = (run.state, data, key, run.eval_batches)
    shapes = jax.tree.map(lambda x: (x.shape, str(x.dtype)), tree)
    c = run.config
    cadence = (c.num_rounds, c.eval.every_rounds, c.checkpoint.every_rounds)
    return f"{jax.tree.structure(tree)} {jax.tree.leaves(shapes)} {cadence}"
