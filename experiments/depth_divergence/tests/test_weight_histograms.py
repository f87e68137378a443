"""scripts/weight_histograms.py: the clients it retrains are the run's own (their weighted mean is
the next checkpoint), and its record counts every convolution weight of every client."""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

from fedjax_deep import experiment as experiment_lib
from fedjax_deep.checkpoint import Checkpointer
from fedjax_deep.config import load_config
from fedjax_deep.train import run

ROOT = pathlib.Path(__file__).parents[3]
sys.path.insert(0, str(ROOT / "experiments" / "depth_divergence" / "scripts"))
import weight_histograms  # noqa: E402


def _tiny_config():
    config = load_config(ROOT / "configs" / "digits_tiny.py")
    config.num_rounds = 1
    return config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wh") / "run"
    run(_tiny_config(), workdir, progress=False)
    return workdir


def test_retrained_clients_average_to_the_runs_next_checkpoint(tiny_run):
    round_, client_params, num_examples = weight_histograms.trained_clients(tiny_run, 0)
    assert round_ == 0 and num_examples.shape == (4,)
    p = np.asarray(num_examples, np.float64) / float(np.sum(num_examples))
    config = _tiny_config()
    exp = experiment_lib.build(config, experiment_lib.prepare(config), {})
    ckpt = Checkpointer(tiny_run / "checkpoints")
    assert ckpt.all_rounds() == [1]
    server = ckpt.restore(1, exp.state, exp.run_key).params  # FedAvg: the weighted mean
    for path, leaf in jax.tree_util.tree_flatten_with_path(client_params)[0]:
        mean = np.tensordot(p, np.asarray(leaf, np.float64), axes=(0, 0))
        expected = server
        for k in path:
            expected = expected[k.key]
        np.testing.assert_allclose(mean, np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_record_counts_every_conv_weight_and_plots(tiny_run, tmp_path):
    out = tmp_path / "hist.png"
    assert weight_histograms.main([str(tiny_run), "--round", "1", "--bins", "9",
                                   "--out", str(out)]) == 0  # fmt: skip
    record = json.loads((tiny_run / "weight_histograms_r1.json").read_text())
    assert record["round"] == 2 and record["num_clients"] == 4 and len(record["edges"]) == 10
    assert sorted(record["layers"]) == ["conv_0/kernel", "conv_1/kernel"]
    sizes = {"conv_0/kernel": 3 * 3 * 1 * 8, "conv_1/kernel": 3 * 3 * 8 * 8}
    for name, counts in record["layers"].items():
        assert len(counts) == 11 and sum(counts) == 4 * sizes[name]
        assert counts[0] == counts[-1] == 0  # the edges span the widest layer
    assert out.stat().st_size > 5000
    again = tmp_path / "again.png"
    weight_histograms.main(["--from-json", str(tiny_run / "weight_histograms_r1.json"),
                            "--out", str(again)])  # fmt: skip
    assert again.stat().st_size > 5000
