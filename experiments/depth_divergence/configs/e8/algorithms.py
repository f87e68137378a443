"""E8 (cpu): do algorithms built against client drift remove the depth penalty? MNIST-1D.

    fedjax-deep train --config experiments/depth_divergence/configs/e8/algorithms.py --workdir runs/e8_algorithms_mnist1d

FedAvg, FedProx (mu 0.01), SCAFFOLD (option II), FedNova and FedDyn (alpha 0.01) at depths 2, 8
and 16 (width 8, kernel 5, GroupNorm: FedBN needs BatchNorm and is in the paper-scale config), 10
IID clients, 8 local epochs x 5 rounds, client SGD lr 0.01 with momentum 0.9, 3 seeds; FL only
(CL for the same settings is in E1's results). mu and alpha are not tuned. About 15 minutes on
two CPU cores.
"""

from experiments.depth_divergence.common import SEEDS, cpu_mnist1d

ALGORITHMS = ("fedavg", "fedprox", "scaffold", "fednova", "feddyn")


def get_config():
    config = cpu_mnist1d()
    config.sweep = (("model.depth", (2, 8, 16)), ("algorithm.name", ALGORITHMS), ("seed", SEEDS))
    return config
