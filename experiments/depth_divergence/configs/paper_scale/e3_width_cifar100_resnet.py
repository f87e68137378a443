"""E3 (paper scale): width multiplier 0.5, 1, 2, 4 on ResNet-18 and ResNet-50, CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e3_width_cifar100_resnet.py --workdir runs/p_e3

The paper preset (common.paper_preset). By the project's FLOP count (scripts/paper_cost.py,
results/paper_cost.json: XLA's cost analysis of one SGD step x the examples the runner computes,
evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR stem) sustained on one H200
(docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 3.5e17 FLOPs for the 48 runs, 1.5
H200-hours (width 4 ResNet-50, 6.6 GFLOP per training example, is 0.14 h a run); at no more than
ResNet-18's examples/s, 3.5 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.sweep = (
        ("model.width_mult", (0.5, 1.0, 2.0, 4.0)),
        ("model.depth", (18, 50)),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
