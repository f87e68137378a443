"""E8 (paper scale): federated algorithms on CIFAR-100 ResNet-18 and ResNet-101.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e8_algorithms_cifar100.py --workdir runs/p_e8_alg

FedAvg, FedAvgM (server momentum 0.9), FedAdam (server lr 0.01), FedProx (mu 0.01), SCAFFOLD,
FedNova, FedDyn (alpha 0.01) and FedBN, FL only (CL in the E1 paper-scale config), on the paper
preset (common.paper_preset). By the project's FLOP count (scripts/paper_cost.py,
results/paper_cost.json: XLA's cost analysis of one SGD step x the examples the runner computes,
evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR stem) sustained on one H200
(docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 1.1e17 FLOPs for the 48 runs, 0.47
H200-hours; at no more than ResNet-18's examples/s, 3.1 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    arms = (
        ("fedavg", "sgd", 1.0, 0.0),
        ("fedavg", "sgd", 1.0, 0.9),
        ("fedavg", "adam", 0.01, 0.0),
        ("fedprox", "sgd", 1.0, 0.0),
        ("scaffold", "sgd", 1.0, 0.0),
        ("fednova", "sgd", 1.0, 0.0),
        ("feddyn", "sgd", 1.0, 0.0),
        ("fedbn", "sgd", 1.0, 0.0),
    )
    fields = (
        "algorithm.name",
        "server_opt.name",
        "server_opt.learning_rate",
        "server_opt.momentum",
    )
    config.sweep = (("model.depth", (18, 101)), (fields, arms), ("seed", SEEDS))
    return config
