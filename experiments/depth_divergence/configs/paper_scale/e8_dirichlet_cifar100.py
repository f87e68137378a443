"""E8 (paper scale): Dirichlet(0.1, 0.5, 100) label skew, ResNet-18 and ResNet-101, CIFAR-100.

    fedjax-deep train --config experiments/depth_divergence/configs/paper_scale/e8_dirichlet_cifar100.py --workdir runs/p_e8

The paper preset (common.paper_preset), but Dirichlet shares of the whole training set instead of
500 sampled examples a client (Fling's Dirichlet sampler gives each client exactly 500). Clients are
padded to the largest one (1.2-1.7x the mean client). By the project's FLOP count
(scripts/paper_cost.py, results/paper_cost.json: XLA's cost analysis of one SGD step x the examples
the runner computes, evaluation included) over the 64.6 TFLOP/s ResNet-18 (CIFAR stem) sustained on
one H200 (docs/benchmarks.md, H200 table: 22,136 examples/s x 2.92 GFLOP): 3.1e17 FLOPs for the 36
runs, 1.3 H200-hours; at no more than ResNet-18's examples/s, 8.5 H200-hours. Not run here.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, paper_preset


def get_config():
    config = paper_preset("cifar100", "resnet", 18)
    config.data.partition = "dirichlet"
    config.data.client_examples = 0  # Dirichlet shares split the whole training set
    config.sweep = (
        ("data.dirichlet_alpha", (0.1, 0.5, 100.0)),
        ("model.depth", (18, 101)),
        FL_VS_CL,
        ("seed", SEEDS),
    )
    return config
