"""E1 (paper scale): VGG-11/13/16/19 with BatchNorm on CIFAR-100, FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e1_depth_cifar100_vgg.py --workdir runs/p_e1_vgg

One A100/H100 or TPU v4-8; about 1 GPU-day for the 24 runs. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "vgg", 11)
    config.sweep = (("model.depth", (11, 13, 16, 19)), FL_VS_CL, ("seed", SEEDS))
    return config
