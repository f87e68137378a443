"""E8 (cpu): server optimizers (FedAvgM, FedAdam, FedYogi, FedAdagrad) and FedBN on MNIST-1D.

    fedjax-deep train --config experiments/depth_divergence/configs/e8/server_opt.py --workdir runs/e8_server_opt_mnist1d

Depths 2 and 8 (width 8, kernel 5), 10 IID clients, 8 local epochs x 5 rounds, client SGD lr 0.01
with momentum 0.9, 3 seeds, FL only. Arms: FedAvg; FedAvgM (server SGD lr 1, momentum 0.9);
FedAdam, FedYogi, FedAdagrad (server lr 0.01, tau 1e-3; not tuned); and, with BatchNorm instead of
GroupNorm, FedAvg and FedBN. About 12 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import SEEDS, cpu_mnist1d

FIELDS = ("algorithm.name", "server_opt.name", "server_opt.learning_rate", "server_opt.momentum",
          "model.norm")  # fmt: skip
ARMS = (
    ("fedavg", "sgd", 1.0, 0.0, "group"),
    ("fedavg", "sgd", 1.0, 0.9, "group"),
    ("fedavg", "adam", 0.01, 0.0, "group"),
    ("fedavg", "yogi", 0.01, 0.0, "group"),
    ("fedavg", "adagrad", 0.01, 0.0, "group"),
    ("fedavg", "sgd", 1.0, 0.0, "batch"),
    ("fedbn", "sgd", 1.0, 0.0, "batch"),
)


def get_config():
    config = cpu_mnist1d()
    config.sweep = (("model.depth", (2, 8)), (FIELDS, ARMS), ("seed", SEEDS))
    return config
