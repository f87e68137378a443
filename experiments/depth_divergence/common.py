"""Shared settings of the experiment configs in ``configs/`` (E1-E8 at ``cpu`` and ``paper`` scale).

CPU scale, our choices where the paper is silent (../shared/SPEC.md): 10 IID clients, client SGD
with momentum 0.9 and weight decay 5e-4, FedAvg (server SGD, learning rate 1), GroupNorm on the
plain CNNs, 3 seeds, CL matched in examples seen per round. Paper scale: :func:`paper_preset`, the
defaults of the paper authors' public code (docs/paper_preset.md). Each config's docstring gives
its command, hardware and expected time.
"""

from __future__ import annotations

from fedjax_deep.config import ConfigError, default_config

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


# The paper's regime, from its authors' public code (docs/paper_preset.md cites the files):
# kxzxvbk/FL_framework scripts/run.py and FLAIR-Community/Fling flzoo/default_config.py.
PAPER_DATASETS = ("cifar10", "cifar100", "tiny_imagenet")


def paper_preset(dataset: str = "cifar100", model: str = "resnet", depth: int = 18):
    """The paper authors' defaults: 30 clients, 8 local epochs, 40 rounds, batch 64 (FL_framework;
    Fling's configs use 32), client SGD lr 0.02 with momentum 0.9 and no weight decay (a fresh
    optimizer each round, as ours), BatchNorm with its statistics averaged (both average the whole
    state_dict), each client's 500 examples drawn independently from the whole training set
    (``iid_sampled``: clients may share examples), and for ResNets torchvision's ImageNet stem
    (7x7 stride-2 convolution and 3x3 stride-2 max pool) on every input size, 32x32 included.

    Ours where theirs differs or is silent: crop+flip augmentation (Fling adds a 15-degree rotation;
    FL_framework has none on CIFAR-10 and a random resized crop on Tiny-ImageNet), VGG with
    BatchNorm and the CIFAR head (the authors' code has no VGG), evaluation every 2 rounds on the
    whole test set (theirs: every 3).
    """
    if dataset not in PAPER_DATASETS:
        raise ConfigError(
            "data.name", dataset, f"the paper preset takes {', '.join(PAPER_DATASETS)}"
        )
    c = default_config()
    c.data.name = dataset
    c.data.augment = "crop_flip"
    c.data.partition = "iid_sampled"
    c.data.client_examples = 500
    c.model.name = model
    c.model.depth = depth
    c.model.norm = "batch"
    c.model.kernel_size = 3
    if model == "resnet":
        c.model.stem_kernel, c.model.stem_stride, c.model.stem_pool = 7, 2, True
    c.fl.num_clients = 30
    c.fl.local_epochs = 8
    c.fl.batch_size = 64
    c.fl.bn_stats = "average"
    c.num_rounds = 40
    c.client_opt.name = "sgd"
    c.client_opt.learning_rate = 0.02
    c.client_opt.momentum = 0.9
    c.client_opt.weight_decay = 0.0
    c.eval.every_rounds = 2
    c.checkpoint.every_rounds = 1
    return c
