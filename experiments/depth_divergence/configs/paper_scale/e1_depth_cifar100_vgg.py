"""E1 (paper scale): VGG-11/13/16/19 with BatchNorm on CIFAR-100, FL against CL.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e1_depth_cifar100_vgg.py --workdir runs/p_e1_vgg

The paper preset (common.paper_preset); VGG with BatchNorm and the CIFAR head (not in the authors'
code). By the project's FLOP count (scripts/paper_cost.py, results/paper_cost.json: XLA's cost
analysis of one SGD step x the examples the runner computes, evaluation included) over the 64.6
TFLOP/s ResNet-18 (CIFAR stem) sustained on one H200 (docs/benchmarks.md, H200 table: 22,136
examples/s x 2.92 GFLOP): 1.5e17 FLOPs for the 24 runs (0.70 to 1.88 GFLOP per training example),
0.66 H200-hours; at no more than ResNet-18's examples/s, 1.5 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "vgg", 11)
    config.sweep = (("model.depth", (11, 13, 16, 19)), FL_VS_CL, ("seed", SEEDS))
    return config
