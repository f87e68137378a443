"""Sweep expansion: products and zipped entries, safe point names, errors that name the sweep."""

import pathlib

import pytest

from fedjax_deep.config import ConfigError, apply_overrides, default_config
from fedjax_deep.sweep import MAX_NAME, expand, point_dir, point_name, sweep_groups


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
    with pytest.raises(ConfigError, match="appears twice"):
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
