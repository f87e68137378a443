"""E1 + E2 (paper scale): ResNet-18/34/50/101/152 on CIFAR-100, FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e1_depth_cifar100_resnet.py --workdir runs/p_e1_resnet \\
        --config.data.data_dir=$TFDS_DATA_DIR

Needs prepared CIFAR-100 (fedjax-deep prepare cifar100). Expected hardware: one 80 GB A100/H100 or a
TPU v4-8 (clients are sharded over all devices); about 2 GPU-days for the 30 runs (ResNet-152 FL:
~4 h per run on one A100 by our FLOP count, ResNet-18 ~40 min). Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.sweep = (("model.depth", (18, 34, 50, 101, 152)), FL_VS_CL, ("seed", SEEDS))
    return config
