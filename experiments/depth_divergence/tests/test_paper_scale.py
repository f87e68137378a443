"""Every paper-scale config runs one round through the runner at tiny size: CIFAR configs on
``tfds.testing.mock_data``, the Tiny-ImageNet config on a 64x64 folder the test writes.

Shrunk by overrides only (clients, examples, rounds, local steps, width, the sweep to its first
point); the preset, the stem, the partition and each config's experiment are kept. One config per
dataset family runs in CI (the Tiny-ImageNet one at ResNet-18: ResNet-101 alone costs minutes of
compilation on a CPU); the rest, and E4 at its own depth, are marked slow.
"""

import json
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.depth_divergence.common import paper_preset
from fedjax_deep.config import ConfigError, load_config
from fedjax_deep.train import run
from tests.test_sources import _write_tiny_imagenet

CONFIGS = pathlib.Path(__file__).parents[1] / "configs" / "paper_scale"
STEMS = sorted(p.stem for p in CONFIGS.glob("*.py") if p.name != "__init__.py")


def tiny(config, data_dir: pathlib.Path):
    """The config at tiny size: 2 clients x 4 examples, 1 round of 1 local step of batch 2,
    1/16 of the width, the first point of its sweep."""
    sweep = []
    for field, values in config.sweep:
        value = values[0]
        if isinstance(field, tuple) and "num_rounds" in field:  # E5 zips epochs with rounds
            value = tuple(1 if f == "num_rounds" else v for f, v in zip(field, value, strict=True))
        sweep.append((field, (value,)))
    config.sweep = tuple(sweep)
    config.fl.num_clients = 2
    if config.data.client_examples:  # the preset's 500 (E6 and Dirichlet set 0)
        config.data.client_examples = 4
    config.fl.local_steps = 1
    config.fl.batch_size = 2
    config.num_rounds = 1
    config.model.width_mult = 1 / 16
    config.eval.batch_size = 8
    config.checkpoint.every_rounds = 0
    config.data.data_dir = str(data_dir)
    config.data.manual_dir = str(data_dir)
    return config


def _one_round(stem: str, tmp_path: pathlib.Path, depth: int = 0) -> dict:
    config = tiny(load_config(CONFIGS / f"{stem}.py"), tmp_path / "data")
    config.model.depth = depth or config.model.depth
    if config.data.name == "tiny_imagenet":
        _write_tiny_imagenet(tmp_path / "data", classes=3, per_class=4)
        summaries = run(config, tmp_path / "run", progress=False)
    else:
        with tfds.testing.mock_data(num_examples=12):
            summaries = run(config, tmp_path / "run", progress=False)
    return summaries if config.sweep else {"": summaries}


def _check(stem: str, tmp_path: pathlib.Path, depth: int = 0) -> None:
    summaries = _one_round(stem, tmp_path, depth)
    assert summaries and all(s.get("status", "done") != "stopped" for s in summaries.values())
    for name in summaries:
        run_dir = tmp_path / "run" / name if name else tmp_path / "run"
        info = json.loads((run_dir / "run_info.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert row["round"] == 1 and np.isfinite(row["eval/accuracy"])
        if config["model"]["name"] == "resnet":  # the preset's torchvision ImageNet stem
            m = config["model"]
            assert (m["stem_kernel"], m["stem_stride"], m["stem_pool"]) == (7, 2, True)
        if config["mode"] != "centralized" and config["data"]["partition"] == "iid_sampled":
            assert info["client_sizes"] == [4, 4]


# The Tiny-ImageNet case is slow here (its folder source is tested fast in tests/test_sources.py).
@pytest.mark.parametrize("stem,depth", [("e1_depth_cifar100_resnet", 0),
                                        pytest.param("e4_receptive_field_tiny_imagenet", 18,
                                                     marks=pytest.mark.slow)])  # fmt: skip
def test_paper_config_runs_one_tiny_round(stem, depth, tmp_path):
    _check(stem, tmp_path, depth)


@pytest.mark.slow
@pytest.mark.parametrize("stem", [s for s in STEMS if s != "e1_depth_cifar100_resnet"])
def test_paper_config_runs_one_tiny_round_slow(stem, tmp_path):
    _check(stem, tmp_path)


def test_preset_holds_the_authors_defaults():
    c = paper_preset("cifar10", "resnet", 34)
    got = (c.fl.num_clients, c.fl.local_epochs, c.num_rounds, c.fl.batch_size,
           c.client_opt.learning_rate, c.client_opt.momentum, c.client_opt.weight_decay,
           c.model.stem_kernel, c.model.stem_stride, c.model.stem_pool, c.model.norm,
           c.data.partition, c.data.client_examples, c.fl.bn_stats)  # fmt: skip
    assert got == (30, 8, 40, 64, 0.02, 0.9, 0.0, 7, 2, True, "batch", "iid_sampled", 500,
                   "average")  # fmt: skip
    with pytest.raises(ConfigError, match="data.name='mnist1d'"):
        paper_preset("mnist1d")
