"""E5 (paper scale): local epochs 1, 2, 4, 8 at 320 epochs in all, ResNet-50 on CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e5_local_steps_cifar100.py --workdir runs/p_e5

One A100/H100; about 1.5 GPU-days. Not run here.
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
