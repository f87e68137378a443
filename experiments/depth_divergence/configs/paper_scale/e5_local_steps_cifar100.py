"""E5 (paper scale): local epochs 1, 2, 4, 8 at 320 epochs in all, ResNet-50 on CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e5_local_steps_cifar100.py --workdir runs/p_e5

The paper preset (common.paper_preset) with ResNet-50. By the project's FLOP count
(scripts/paper_cost.py, results/paper_cost.json: XLA's cost analysis of one SGD step x the examples
the runner computes, evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR stem) sustained on
one H200 (docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 5.2e16 FLOPs for the 24
runs, 0.23 H200-hours (0.43 GFLOP per training example); at no more than ResNet-18's examples/s, 1.7
H200-hours. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 50)
    config.sweep = (
        (("fl.local_epochs", "num_rounds"), ((1, 320), (2, 160), (4, 80), (8, 40))),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
