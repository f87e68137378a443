"""VGG-11/13/16/19 (Simonyan and Zisserman), with or without normalization, as a depth table.

Convolutions are named ``conv_0`` ... in order, hidden classifier layers ``fc_0`` ..., the output
layer ``head``. The feature extractor is the table's sequence of 3x3 (``kernel_size``) convolutions and 2x2 max
pools; the head is an adaptive average pool to ``head_pool`` (7 for torchvision's ImageNet model,
1 for CIFAR-style VGG), a flatten, ``classifier`` hidden layers (``(4096, 4096)`` for ImageNet, none
for CIFAR) and the output layer. torchvision's classifier dropout is left out (no stochastic layers
yet); it holds no parameters, so parameter counts are unchanged. The table becomes a
:class:`~fedjax_deep.models.layers.Classifier` plan.
"""

from __future__ import annotations

from flax import nnx

from fedjax_deep.models.layers import Classifier, make_conv_norm

# depth -> channels per conv, 'M' = 2x2 max pool (Simonyan and Zisserman, table 1, configs A B D E)
VGG_TABLE: dict[int, tuple] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


def scaled(channels: int, width_mult: float) -> int:
    return int(round(channels * width_mult))


class VGG(Classifier):
    """VGG of a table depth; see the module docstring for the head."""

    def __init__(
        self,
        input_shape,
        num_classes: int,
        *,
        depth: int,
        width_mult: float = 1.0,
        kernel_size: int = 3,
        norm: str = "none",
        norm_groups: int = 8,
        norm_group_size: int = 0,
        head_pool: int = 1,
        classifier: tuple[int, ...] = (),
        conv_impl: str = "im2col",
        rngs: nnx.Rngs,
    ):
        rank = len(input_shape) - 1
        conv_norm = make_conv_norm(rank, norm, norm_groups=norm_groups,
                                   norm_group_size=norm_group_size, conv_impl=conv_impl, rngs=rngs)  # fmt: skip
        plan, cin, i = [], input_shape[-1], 0
        for item in VGG_TABLE[depth]:
            if item == "M":
                plan.append(("max_pool", 2, 2, 0))
                continue
            cout = scaled(item, width_mult)
            conv, norm_layer = conv_norm(cin, cout, kernel_size)
            setattr(self, f"conv_{i}", conv)
            setattr(self, f"norm_{i}", norm_layer)
            plan += [("layer", f"conv_{i}", f"norm_{i}", ""), ("keep", f"conv_{i}")]
            cin, i = cout, i + 1
        plan.append(("avg_pool", head_pool))
        features = cin * head_pool**rank
        for j, hidden in enumerate(classifier):
            setattr(self, f"fc_{j}", nnx.Linear(features, hidden, rngs=rngs))
            plan += [("layer", f"fc_{j}", "", ""), ("keep", f"fc_{j}")]
            features = hidden
        self.plan = tuple(plan)
        self.head = nnx.Linear(features, num_classes, rngs=rngs)


def vgg_min_input(depth: int) -> int:
    """Smallest spatial size that survives the table's pools (each halves, flooring)."""
    return 2 ** sum(item == "M" for item in VGG_TABLE[depth])


__all__ = ["VGG", "VGG_TABLE", "vgg_min_input"]
