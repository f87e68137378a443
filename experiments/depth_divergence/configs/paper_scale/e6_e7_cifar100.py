"""E6 + E7 (paper scale): every client holds the full set; K independent SGD runs (the null reference),
ResNet-18 and ResNet-101 on CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e6_e7_cifar100.py --workdir runs/p_e6_e7

The paper preset (common.paper_preset) with its 30 clients each holding the whole training set (each
FL round is 30 epochs of data; CL matched in examples seen). By the project's FLOP count
(scripts/paper_cost.py, results/paper_cost.json: XLA's cost analysis of one SGD step x the examples
the runner computes, evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR stem) sustained on
one H200 (docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 4.9e17 FLOPs for the 18
runs, 2.1 H200-hours; at no more than ResNet-18's examples/s, 13.6 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.fl.local_epochs = 1
    config.data.client_examples = 0  # partition full: every client holds the whole set
    config.sweep = (
        ("model.depth", (18, 101)),
        (
            ("mode", "data.partition"),
            (("fl", "full"), ("independent", "full"), ("centralized", "full")),
        ),
        ("seed", SEEDS),
    )
    return config
