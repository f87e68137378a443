"""Sweep expansion: products and zipped entries, safe point names, errors that name the sweep;
groups, member batches and the names a terminal shows."""

import pathlib
import types

import numpy as np
import pytest

from fedjax_deep.config import ConfigError, apply_overrides, default_config
from fedjax_deep.sweep import (
    MAX_NAME,
    Batch,
    Entry,
    Member,
    batches,
    describe,
    expand,
    members_that_fit,
    parse_entries,
    point_dir,
    point_name,
    sweep_groups,
)


def _sweep(text):
    return apply_overrides(default_config(), [f"--config.sweep={text}"])


def test_product_and_zipped_entries():
    points = expand(
        _sweep("(('model.depth', (2, 4)), (('fl.local_epochs', 'num_rounds'), ((1, 8), (8, 1))))")
    )
    assert [p.name for p in points] == [
        "depth-2_local_epochs-1_num_rounds-8",
        "depth-2_local_epochs-8_num_rounds-1",
        "depth-4_local_epochs-1_num_rounds-8",
        "depth-4_local_epochs-8_num_rounds-1",
    ]
    assert {(p.config.model.depth, p.config.fl.local_epochs, p.config.num_rounds) for p in points} == {
        (2, 1, 8), (2, 8, 1), (4, 1, 8), (4, 8, 1)
    }  # fmt: skip
    assert all(p.config.sweep == () for p in points)


def test_no_sweep_is_one_unnamed_point():
    (point,) = expand(default_config())
    assert point.name == "" and point_dir(pathlib.Path("w"), "") == pathlib.Path("w")


@pytest.mark.parametrize(
    "value", ["../../x", "/etc/passwd", "a/b", "..", ".", "x" * 1000, "名前", "a b\tc\n"]
)
def test_point_names_are_plain_directory_names_inside_the_workdir(tmp_path, value):
    name = point_name([("data.data_dir", value)])
    assert "/" not in name and name not in (".", "..") and len(name.encode()) <= MAX_NAME
    path = point_dir(tmp_path, name)
    assert path.parent == tmp_path
    path.mkdir()  # a real directory name on this file system


def test_values_that_share_a_name_get_distinct_names():
    points = expand(_sweep("(('data.data_dir', ('a/b', 'a?b', 'a_b')),)"))
    names = [p.name for p in points]
    assert len(set(names)) == 3 and names[0] == "data_dir-a_b"


def test_errors_name_the_sweep_value():
    with pytest.raises(
        ConfigError, match=r"config.sweep=2.5: a value of model.depth: expected an integer"
    ):
        expand(_sweep("(('model.depth', (2.5,)),)"))
    with pytest.raises(
        ConfigError, match=r"config.model.depth=0: must be in .*at the sweep point model.depth=0"
    ):
        expand(_sweep("(('model.depth', (2, 0)),)"))
    with pytest.raises(ConfigError, match="model.depth already lists 2, the same value"):
        expand(_sweep("(('model.depth', (2, 2)),)"))
    with pytest.raises(ConfigError, match="cannot sweep itself"):
        expand(_sweep("(('sweep', ((),)),)"))


def test_sweep_groups_gather_points_that_differ_only_in_traced_fields():
    points = expand(_sweep("(('model.depth', (2, 4)), ('seed', (0, 1, 2)))"))
    groups = sweep_groups(points)
    assert [[p.name for p in g] for g in groups] == [
        ["depth-2_seed-0", "depth-2_seed-1", "depth-2_seed-2"],
        ["depth-4_seed-0", "depth-4_seed-1", "depth-4_seed-2"],
    ]
    # Learning rate, momentum and mu share a program; the mode and the algorithm do not.
    sweep = ("(('mode', ('fl', 'centralized')), ('client_opt.learning_rate', (0.1, 0.01)), "
             "('client_opt.momentum', (0.0, 0.9)), ('algorithm.mu', (0.0, 0.1)))")  # fmt: skip
    groups = sweep_groups(expand(_sweep(sweep)))
    assert [len(g) for g in groups] == [8, 8]
    assert {p.config.mode for p in groups[0]} == {"fl"}
    algos = "(('algorithm.name', ('fedavg', 'fedprox')), ('seed', (0, 1)))"
    assert [len(g) for g in sweep_groups(expand(_sweep(algos)))] == [2, 2]


def test_entries_are_parsed_once_into_records():
    config = _sweep(
        "(('model.depth', (2, 4)), (('fl.local_epochs', 'num_rounds'), ((1, 8), (8, 1))))"
    )
    assert parse_entries(config) == [
        Entry(("model.depth",), ((2,), (4,))),
        Entry(("fl.local_epochs", "num_rounds"), ((1, 8), (8, 1))),
    ]
    point = expand(config)[1]
    assert point.assignments == (("model.depth", 2), ("fl.local_epochs", 8), ("num_rounds", 1))
    with pytest.raises(ConfigError, match="give one value per field"):
        parse_entries(_sweep("((('model.depth', 'seed'), ((2, 0), (4,))),)"))


def test_names_for_a_terminal_fit_their_width():
    long = ["depth-8_mode-fl_" + "x" * 100, "b", "c", "d", "e"]
    assert describe(["depth-8_mode-fl"]) == "depth-8_mode-fl"
    assert describe(["depth-8_mode-fl", "b", "c"]) == "3 points: depth-8_mode-fl ... (+2)"
    text = describe(long, 60)
    assert (
        len(text) == 60
        and text.startswith("5 points: depth-8_mode-fl_x")
        and text.endswith("... (+4)")
    )
    assert len(describe([long[0]], 30)) == 30


class _Built:
    """What batching reads of a built experiment: its state, inputs and evaluation data."""

    def __init__(self, config, width):
        self.config, self.mesh, self.on_host = config, None, False
        self.state = {"w": np.zeros((width, 2), np.float32)}
        self.eval_batches = {"x": np.zeros((3,), np.float32)}

    def round_inputs(self, r):
        return {"x": np.zeros((4,), np.float32)}, np.zeros((2,), np.uint32)


def _members(sweep):
    points = expand(_sweep(sweep))
    prepared = types.SimpleNamespace(memory={"total": 100})
    return [Member(p.name, None, p.config, {}, prepared) for p in points]


def test_batches_share_a_program_when_shapes_agree_and_fit_in_memory():
    members = _members("(('seed', (0, 1, 2)),)")
    built = []

    def build(m):
        built.append(m.name)
        return _Built(m.config, 2 if m.name != "seed-2" else 3)  # seed-2: another state shape

    out = list(batches(members, build, free_bytes=10**6))
    assert [[m.name for m in b.members] for b in out] == [["seed-0", "seed-1"], ["seed-2"]]
    assert all(isinstance(b, Batch) for b in out)
    assert out[0].execution == "map" and out[1].execution is None  # CPU; R=1 has no member axis
    assert built == ["seed-0", "seed-1", "seed-2"]
    # Memory for two members at a time: the third is built only after the first two trained.
    built.clear()
    it = batches(members, lambda m: (built.append(m.name), _Built(m.config, 2))[1],
                 free_bytes=250)  # fmt: skip
    assert [m.name for m in next(it).members] == ["seed-0", "seed-1"] and len(built) == 2
    assert [m.name for m in next(it).members] == ["seed-2"]
    assert members_that_fit(5, 100, 250) == 2 and members_that_fit(5, 100, None) == 5
    assert members_that_fit(5, 100, 10) == 1


def test_sweep_axis_off_and_single_points_run_alone():
    members = _members("(('seed', (0, 1)), ('sweep_axis', ('off',)))")
    out = list(batches(members, lambda m: _Built(m.config, 2), free_bytes=None))
    assert [(len(b.members), b.execution) for b in out] == [(1, None), (1, None)]
    (one,) = _members("(('seed', (0,)),)")
    assert [b.members for b in batches([one], lambda m: _Built(m.config, 2), free_bytes=None)] == [
        (one,)
    ]
