"""A starting point on CIFAR-10 (tensorflow-datasets, prepared once): FedAvg on ResNet-18 with the
CIFAR stem and BatchNorm, for a GPU or TPU.

    fedjax-deep train --config configs/cifar10.py --workdir runs/cifar10 \\
        --config.data.data_dir=$TFDS_DATA_DIR

Needs the array_record folders that ``fedjax-deep prepare cifar10 --data-dir DIR`` builds (network
and TensorFlow once); without them the run stops with one line saying so. 10 IID clients, 2 local
epochs of batch 64 a round with crop+flip, client SGD 0.05 with momentum 0.9, 50 rounds; on a CPU a
round takes minutes, so test it with ``--config.fl.num_clients=2 --config.num_rounds=1``.
"""

from fedjax_deep.config import default_config


def get_config():
    config = default_config()
    config.data.name = "cifar10"
    config.data.augment = "crop_flip"
    config.data.validation_fraction = 0.1
    config.model.name = "resnet"
    config.model.depth = 18
    config.model.norm = "batch"
    config.model.kernel_size = 3
    config.fl.num_clients = 10
    config.fl.local_epochs = 2
    config.fl.batch_size = 64
    config.client_opt.learning_rate = 0.05
    config.client_opt.momentum = 0.9
    config.num_rounds = 50
    config.eval.every_rounds = 2
    return config
