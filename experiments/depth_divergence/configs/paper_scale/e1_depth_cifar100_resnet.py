"""E1 + E2 (paper scale): ResNet-18/34/50/101/152 on CIFAR-100, FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e1_depth_cifar100_resnet.py --workdir runs/p_e1_resnet \\
        --config.data.data_dir=$TFDS_DATA_DIR

Needs prepared CIFAR-100 (fedjax-deep prepare cifar100). The paper preset (common.paper_preset: 30
clients x 500 sampled examples, 8 local epochs, 40 rounds, batch 64, ImageNet stem on 32x32). By the
project's FLOP count (scripts/paper_cost.py, results/paper_cost.json: XLA's cost analysis of one SGD
step x the examples the runner computes, evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR
stem) sustained on one H200 (docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 8.1e16
FLOPs for the 30 runs, 0.35 H200-hours (0.14 to 1.13 GFLOP per training example from ResNet-18 to
-152: the stem leaves 8x8 maps); counting every example at no more than ResNet-18's 22,136
examples/s, 1.9 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.sweep = (("model.depth", (18, 34, 50, 101, 152)), FL_VS_CL, ("seed", SEEDS))
    return config
