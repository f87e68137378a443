"""E1's reviewer controls, second part (cpu): FedProx, SCAFFOLD and FedDyn at depth 16, the CNN
without normalization at depth 16, and the three algorithms at depth 8. Under E1's comparison
protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/controls_b.py --workdir runs/e1_controls_b
    (then the ``compare`` command of experiments/depth_divergence/configs/e1/controls.py, with this workdir added)

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py`` and the grids of experiments/depth_divergence/configs/e1/controls.py
(FL 0.03, 0.1, 0.3; CL 0.01, 0.03, 0.1; a grid end chosen is flagged and widened as in E1), fixed
before any of these runs was looked at; the same seeds as E1, whose runs are the baseline:

- FL only (their CL is E1's): FedProx (mu 0.01), SCAFFOLD and FedDyn (alpha 0.01), the
  coefficients fixed at common defaults (only the learning rate is tuned), depth 16 first;
- the plain CNN without normalization at depth 16, FL and CL;
- the three algorithms at depth 8.

These 120 points were first part of experiments/depth_divergence/configs/e1/controls.py, in another order; they were
moved here, unchanged, so that depth 16's algorithms run first. Expected time on two CPU cores,
alone: about 35 minutes. Results: experiments/depth_divergence/results/e1_controls_mnist1d.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
CL_LRS = (0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "model.skip", "model.norm", "model.norm_group_size", "mode",
          "algorithm.name", "client_opt.learning_rate")  # fmt: skip
ALGORITHMS = ("fedprox", "scaffold", "feddyn")


def points():
    out = []
    for algorithm in ALGORITHMS:
        out += [(16, False, "group", 0, "fl", algorithm, lr) for lr in FL_LRS]
    out += [(16, False, "none", 0, "fl", "fedavg", lr) for lr in FL_LRS]
    out += [(16, False, "none", 0, "centralized", "fedavg", lr) for lr in CL_LRS]
    for algorithm in ALGORITHMS:
        out += [(8, False, "group", 0, "fl", algorithm, lr) for lr in FL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
