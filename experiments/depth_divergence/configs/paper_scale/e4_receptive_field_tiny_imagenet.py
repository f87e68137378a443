"""E4 (paper scale, the headline): ResNet-101 on Tiny-ImageNet with the ImageNet stem (7x7/s2 + max
pool) against smaller receptive fields (5x5/s1, 3x3/s1 without pool), FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e4_receptive_field_tiny_imagenet.py \\
        --workdir runs/p_e4 --config.data.manual_dir=/data   # holds tiny-imagenet-200/

The paper reports up to +43% for ResNet-101 on Tiny-ImageNet from such guidelines. The paper preset
(common.paper_preset: 30 clients x 500 sampled images, 8 local epochs, 40 rounds, batch 64). By the
project's FLOP count (scripts/paper_cost.py, results/paper_cost.json: XLA's cost analysis of one SGD
step x the examples the runner computes, evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR
stem) sustained on one H200 (docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 3.6e18
FLOPs for the 18 runs, 15.4 H200-hours: the stride-1 stems without pool keep 64x64 maps (58.7 GFLOP
per training example, 1.26 h a run, against 3.4 GFLOP and 0.07 h with the 7x7/2 stem). Needs the
memory of an 80 GB card or more (the runner chunks clients to fit). Not run here.
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
