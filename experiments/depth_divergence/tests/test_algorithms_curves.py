"""experiments/depth_divergence/scripts/algorithms_curves.py: each correction minus FedAvg, round by
round, paired by seed, worked by hand on a two-seed fixture."""

import importlib.util
import json
import math
import pathlib

import pytest
from scipy import stats as sp

SCRIPT = pathlib.Path(__file__).parents[1] / "scripts" / "algorithms_curves.py"


@pytest.fixture(scope="module")
def ac():
    spec = importlib.util.spec_from_file_location("algorithms_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arm(name, curves, **coef):
    return {"arm": {"algorithm.name": name, **coef},
            "per_seed": {s: {"rounds": [1, 2, 3][: len(c)], "accuracy": c}
                         for s, c in curves.items()}}  # fmt: skip


GROUP = {
    "a": _arm("fedavg", {"2": [0.5, 0.6, 0.7], "3": [0.4, 0.5, 0.6]}),
    # FedProx ran 2 rounds on seed 3: the rounds both seeds share are 1 and 2.
    "b": _arm("fedprox", {"2": [0.6, 0.6, 0.9], "3": [0.4, 0.7]}, **{"algorithm.mu": 0.01}),
}


def test_each_correction_minus_fedavg_by_hand(ac, tmp_path, capsys):
    curves = ac.paired_curves(GROUP)
    rounds, mean, half, n = curves["FedProx (mu 0.01)"]
    assert list(rounds) == [1, 2] and n == 2
    # Round 1: +10 and 0 points; round 2: 0 and +20.
    assert list(mean) == pytest.approx([5.0, 10.0])
    t = sp.t.ppf(0.975, 1)
    assert list(half) == pytest.approx([t * math.sqrt(50) / math.sqrt(2),
                                        t * math.sqrt(200) / math.sqrt(2)])  # fmt: skip
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({"groups": {"8": GROUP, "2": {"a": GROUP["a"]}}}))
    assert ac.main([str(path)]) == 0
    assert (tmp_path / "algorithms_minus_fedavg.png").stat().st_size > 5000
    path.write_text(json.dumps({"groups": {"2": {"a": GROUP["a"]}}}))
    assert ac.main([str(path)]) == 2
    assert "no group holds FedAvg and another algorithm" in capsys.readouterr().err
