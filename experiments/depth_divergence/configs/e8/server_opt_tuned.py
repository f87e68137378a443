"""E8's server optimizers under E1's comparison protocol (cpu): FedAvgM and FedAdam at depths 8
and 16. FL only; the IID FedAvg and CL references are E1's.

    fedjax-deep train --config experiments/depth_divergence/configs/e8/server_opt_tuned.py --workdir runs/e8_server_opt_tuned
    (then the ``compare`` command of experiments/depth_divergence/results/e1_final_mnist1d/README.md, with this workdir)

The question: does an adaptive or momentum server optimizer remove the depth-16 penalty that
FedProx, SCAFFOLD and FedDyn did not? The protocol of ``experiments/depth_divergence/configs/e1/tuned.py``, fixed
before any of these runs was looked at, with the same seeds (0-4). The clients keep E1's SGD
(momentum 0.9) at the rate FedAvg chose at that depth (0.1 at depth 8, 0.03 at depth 16); the
server's learning rate is the tuned coefficient, chosen on validation accuracy like FedProx's mu
(each server rate is its own arm; the best mean validation accuracy chooses):

- FedAvgM: server SGD with momentum 0.9, server rate (0.1, 0.3, 1.0) (0.1 is FedAvg's steady-state
  step; 1.0 is the E8 snapshot's);
- FedAdam (Reddi et al. 2021): b1 0.9, b2 0.99, tau 1e-3, server rate (0.001, 0.003, 0.01, 0.03).

A chosen rate at a grid end is flagged and, time allowing, widened. 70 runs, about 18 minutes on
two CPU cores.
"""

from experiments.depth_divergence.common import e1_protocol

SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "client_opt.learning_rate", "server_opt.name", "server_opt.momentum",
          "server_opt.learning_rate")  # fmt: skip
CLIENT_LR = {
    8: 0.1,
    16: 0.03,
}  # FedAvg's choice in experiments/depth_divergence/configs/e1/tuned.py
SERVER = (("sgd", 0.9, (0.1, 0.3, 1.0)), ("adam", 0.0, (0.001, 0.003, 0.01, 0.03)))


def points():
    return tuple((depth, lr, name, momentum, server_lr) for depth, lr in CLIENT_LR.items()
                 for name, momentum, grid in SERVER for server_lr in grid)  # fmt: skip


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
