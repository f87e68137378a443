"""scripts/weight_histograms.py: the clients it retrains are the run's own (their weighted mean is
the next checkpoint), and its record counts every convolution weight of every client."""

import json
import pathlib
import sys

import jax
import numpy as np

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


def test_retrained_clients_are_the_runs_and_their_record_counts_every_weight(tmp_path):
    workdir = tmp_path / "run"
    run(_tiny_config(), workdir, progress=False)
    round_, client_params, num_examples = weight_histograms.trained_clients(workdir, 0)
    assert round_ == 0 and num_examples.shape == (4,)

    # The run's own clients: FedAvg's weighted mean of them is the checkpoint of round 1.
    p = np.asarray(num_examples, np.float64) / float(np.sum(num_examples))
    config = _tiny_config()
    exp = experiment_lib.build(config, experiment_lib.prepare(config), {})
    server = Checkpointer(workdir / "checkpoints").restore(1, exp.state, exp.run_key).params
    for path, leaf in jax.tree_util.tree_flatten_with_path(client_params)[0]:
        mean = np.tensordot(p, np.asarray(leaf, np.float64), axes=(0, 0))
        expected = server
        for k in path:
            expected = expected[k.key]
        np.testing.assert_allclose(mean, np.asarray(expected), rtol=1e-5, atol=1e-6)

    # Their record: every convolution weight of every client, inside the edges.
    record = weight_histograms.histogram_record(client_params, round_, num_bins=9)
    assert record["round"] == 1 and record["num_clients"] == 4 and len(record["edges"]) == 10
    assert sorted(record["layers"]) == ["conv_0/kernel", "conv_1/kernel"]
    sizes = {"conv_0/kernel": 3 * 3 * 1 * 8, "conv_1/kernel": 3 * 3 * 8 * 8}
    for name, counts in record["layers"].items():
        assert len(counts) == 11 and sum(counts) == 4 * sizes[name]
        assert counts[0] == counts[-1] == 0 and max(counts) < sum(counts)  # spread, not a spike
    saved = tmp_path / "hist.json"
    saved.write_text(json.dumps(record))
    out = tmp_path / "hist.png"
    assert weight_histograms.main(["--from-json", str(saved), "--out", str(out)]) == 0
    assert out.stat().st_size > 5000
