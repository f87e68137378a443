"""E4 (paper scale, the headline): ResNet-101 on Tiny-ImageNet with the ImageNet stem (7x7/s2 +
max pool) against smaller receptive fields (5x5/s1, 3x3/s1 without pool), FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e4_receptive_field_tiny_imagenet.py \\
        --workdir runs/p_e4 --config.data.manual_dir=/data   # holds tiny-imagenet-200/

The paper reports up to +43% for ResNet-101 on Tiny-ImageNet from such guidelines. One 80 GB
A100/H100 (the 3x3/s1 stem quadruples activations); about 3 GPU-days for 18 runs. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("tiny_imagenet", "resnet", 101)
    config.sweep = (
        (
            ("model.stem_kernel", "model.stem_stride", "model.stem_pool"),
            ((7, 2, True), (5, 1, False), (3, 1, False)),
        ),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
