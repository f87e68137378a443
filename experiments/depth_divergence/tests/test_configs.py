"""Every config of the study loads, expands into distinct valid points and states its command."""

import pathlib

import pytest

from fedjax_deep.config import ConfigError, load_config
from fedjax_deep.data import INPUT_SHAPES
from fedjax_deep.models import check_model_config
from fedjax_deep.sweep import expand

CONFIGS = pathlib.Path(__file__).parents[1] / "configs"
WIDEN = CONFIGS / "e1" / "widen.py"
FILES = sorted(p for p in CONFIGS.rglob("*.py") if p.name != "__init__.py")
# One entry per config: a family file (``file.py:arg``) counts once per member.
ENTRIES = [f"{p}:{arg}" for p in FILES if p == WIDEN for arg in "abcdefghi"] + [
    str(p) for p in FILES if p != WIDEN
]


def _id(entry: str) -> str:
    return str(pathlib.Path(entry).relative_to(CONFIGS))


@pytest.mark.parametrize("entry", ENTRIES, ids=[_id(e) for e in ENTRIES])
def test_every_config_loads_and_expands(entry):
    points = expand(load_config(entry))
    assert points and len({p.name for p in points}) == len(points)
    for point in points:
        check_model_config(point.config.model, INPUT_SHAPES[point.config.data.name])


@pytest.mark.parametrize("path", FILES, ids=[_id(str(p)) for p in FILES])
def test_every_config_gives_its_command(path):
    doc = path.read_text().split('"""')[1]
    assert "fedjax-deep train --config experiments/depth_divergence/configs/" in doc


def test_zipped_sweep_entries_move_together():
    config = load_config(CONFIGS / "e5" / "local_steps.py")
    pairs = {(p.fl.local_epochs, p.num_rounds) for p in (q.config for q in expand(config))}
    assert pairs == {(1, 40), (2, 20), (4, 10), (8, 5)}


def test_a_config_family_member_is_chosen_by_its_argument():
    a, i = (expand(load_config(f"{WIDEN}:{arg}")) for arg in "ai")
    assert len(a) == 30 and len(i) == 15  # the passes' run counts, as their notes say
    assert {p.config.server_opt.name for p in i} == {"adam", "sgd"}
    with pytest.raises(ConfigError, match=r"widen.py:z.*choose a pass among a, b, c"):
        load_config(f"{WIDEN}:z")
