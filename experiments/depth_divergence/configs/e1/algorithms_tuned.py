"""Drift correction with its coefficient tuned, and non-IID clients, at depths 8 and 16 (cpu). FL
only; the CL reference is E1's. Under E1's comparison protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/algorithms_tuned.py --workdir runs/e1_algorithms_tuned
    (then the ``compare`` command of experiments/depth_divergence/results/e1_remedies_mnist1d/README.md, which reads this
    sweep with the others)

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py``, fixed before any of these runs was looked at; the
same seeds as E1. experiments/depth_divergence/configs/e1/controls_b.py ran FedProx (mu 0.01) and FedDyn (alpha 0.01)
with only the learning rate tuned; here their coefficient is tuned too, one decade either side:

- FedProx at depth 16, mu 0.001 and 0.1, FL grid (0.03, 0.1, 0.3);
- FedDyn at depth 16, alpha 0.001 and 0.1, grid (0.01, 0.03, 0.1) (FedDyn at alpha 0.01 chose
  0.1 of 0.03-0.3 at depth 16, and the grid's smallest at depth 8);
- FedDyn at depth 8, alpha 0.01, learning rate 0.01: E1's rule for an arm that chose a grid's end;
- FedAvg with Dirichlet(0.1) label partitions at depths 8 and 16, FL grid (0.03, 0.1, 0.3).

The coefficient is chosen like the learning rate: among an algorithm's (coefficient, rate) pairs,
the one with the best mean validation accuracy on the tuning seeds (compare.md lists every arm's
validation scores; the choice across coefficients is read from them). 100 runs.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
FEDDYN_LRS = (0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "algorithm.name", "algorithm.mu", "algorithm.alpha", "data.partition",
          "data.dirichlet_alpha", "client_opt.learning_rate")  # fmt: skip


def points():
    out = []
    for mu in (0.001, 0.1):
        out += [(16, "fedprox", mu, 0.01, "iid", 0.5, lr) for lr in FL_LRS]
    for alpha in (0.001, 0.1):
        out += [(16, "feddyn", 0.01, alpha, "iid", 0.5, lr) for lr in FEDDYN_LRS]
    out += [(8, "feddyn", 0.01, 0.01, "iid", 0.5, 0.01)]
    for depth in (8, 16):
        out += [(depth, "fedavg", 0.01, 0.01, "dirichlet", 0.1, lr) for lr in FL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
