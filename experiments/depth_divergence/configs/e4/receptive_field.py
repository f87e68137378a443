"""E4 (cpu): receptive field at fixed resolution, depth and width on MNIST-1D.

    fedjax-deep train --config experiments/depth_divergence/configs/e4/receptive_field.py --workdir runs/e4_rf_mnist1d

Plain 1-D CNN of depth 8, width 8, no downsampling (so the receptive field changes without the
input resolution or any striding changing): block kernel 3, 5, 9 (receptive fields 17, 33, 65 of
the 40-sample signal; the report's RF column). FL against CL, 3 seeds. 5.5 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import FL_VS_CL, SEEDS, cpu_mnist1d


def get_config():
    config = cpu_mnist1d(depth=8)
    config.sweep = (("model.kernel_size", (3, 5, 9)), FL_VS_CL, ("seed", SEEDS))
    return config
