"""E3 (paper scale): width multiplier 0.5, 1, 2, 4 on ResNet-18 and ResNet-50, CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e3_width_cifar100_resnet.py --workdir runs/p_e3

One A100/H100 or a TPU v4-8; width 4 ResNet-50 dominates (about 16x ResNet-50's FLOPs): 3-4
GPU-days in all. Not run here.
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
