"""Shared settings of the experiment configs in ``configs/`` (E1-E8 at ``cpu`` and ``paper`` scale).

Our choices where the paper is silent (../shared/SPEC.md): 10 IID clients, client SGD with momentum
0.9 and weight decay 5e-4, FedAvg (server SGD, learning rate 1), GroupNorm on the plain CNNs
(BatchNorm on the paper's ResNets and VGGs, statistics averaged), 3 seeds, CL matched in examples
seen per round. Each config's docstring gives its command, hardware and expected time.
"""

from __future__ import annotations

from fedjax_deep.config import default_config

SEEDS = (0, 1, 2)
FL_VS_CL = ("mode", ("fl", "centralized"))


def cpu_mnist1d(depth: int = 8, width: int = 8):
    """MNIST-1D, plain 1-D CNN (kernel 5, GroupNorm, flatten head): separates depths and widths
    where digits saturates. 10 clients x 400 signals, 8 local epochs x 5 rounds = 40 epochs."""
    c = default_config()
    c.data.name = "mnist1d"
    c.model.name = "plain_cnn"
    c.model.depth = depth
    c.model.width = width
    c.model.kernel_size = 5
    c.model.norm = "group"
    c.fl.num_clients = 10
    c.fl.local_epochs = 8
    c.fl.batch_size = 32
    c.num_rounds = 5
    c.client_opt.learning_rate = 0.01
    c.checkpoint.every_rounds = 0  # short runs: checkpoint at the end only
    return c


def e1_protocol(depth: int = 8, width: int = 8):
    """E1 under the comparison protocol (experiments/depth_divergence/configs/e1/tuned.py and its controls):
    :func:`cpu_mnist1d` with a 10% validation split, 1 local epoch of batch 36 (10 steps) a round
    and 80 rounds. The sweeps set the learning rates and seeds."""
    c = cpu_mnist1d(depth, width)
    c.data.validation_fraction = 0.1
    c.fl.local_epochs = 1
    c.fl.batch_size = 36
    c.num_rounds = 80
    return c


def paper_cifar100(model: str = "resnet", depth: int = 18):
    """CIFAR-100 with the paper's families, crop+flip, 10 IID clients x 8 local epochs, 40 rounds,
    batch 64, SGD lr 0.05, BatchNorm (statistics averaged), CIFAR stem."""
    c = default_config()
    c.data.name = "cifar100"
    c.data.augment = "crop_flip"
    c.model.name = model
    c.model.depth = depth
    c.model.norm = "batch"
    c.model.kernel_size = 3
    c.fl.num_clients = 10
    c.fl.local_epochs = 8
    c.fl.batch_size = 64
    c.num_rounds = 40
    c.client_opt.learning_rate = 0.05
    c.eval.every_rounds = 2
    c.checkpoint.every_rounds = 1
    return c


def paper_tiny_imagenet(depth: int = 101):
    """Tiny-ImageNet (64x64, 200 classes), ResNet with the ImageNet stem (7x7/s2 + max pool), as
    in the paper's headline ResNet-101 experiment; otherwise as :func:`paper_cifar100`."""
    c = paper_cifar100("resnet", depth)
    c.data.name = "tiny_imagenet"
    c.model.stem_kernel = 7
    c.model.stem_stride = 2
    c.model.stem_pool = True
    return c
