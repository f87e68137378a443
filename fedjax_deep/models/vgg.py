"""VGG-11/13/16/19 (Simonyan and Zisserman), with or without normalization, as a depth table.

Convolutions are named ``conv_0`` ... in order, hidden classifier layers ``fc_0`` ..., the output
layer ``head``. The feature extractor is the table's sequence of 3x3 (``kernel_size``) convolutions and 2x2 max
pools; the head is an adaptive average pool to ``head_pool`` (7 for torchvision's ImageNet model,
1 for CIFAR-style VGG), a flatten, ``classifier`` hidden layers (``(4096, 4096)`` for ImageNet, none
for CIFAR) and the output layer. torchvision's classifier dropout is left out (no stochastic layers
yet); it holds no parameters, so parameter counts are unchanged.
"""

from __future__ import annotations

import jax
from flax import nnx

from fedjax_deep.models.layers import Conv, adaptive_avg_pool, apply_norm, keep, make_norm, max_pool

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


class VGG(nnx.Module):
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
        self.plan = VGG_TABLE[depth]
        self.conv_names = []
        cin, spatial = input_shape[-1], list(input_shape[:-1])
        for item in self.plan:
            if item == "M":
                spatial = [n // 2 for n in spatial]
                continue
            i = len(self.conv_names)
            cout = scaled(item, width_mult)
            setattr(
                self,
                f"conv_{i}",
                Conv(cin, cout, (kernel_size,) * rank, use_bias=norm == "none", impl=conv_impl,
                     rngs=rngs),
            )  # fmt: skip
            setattr(
                self,
                f"norm_{i}",
                make_norm(norm, cout, groups=norm_groups, group_size=norm_group_size, rngs=rngs),
            )
            self.conv_names.append(f"conv_{i}")
            cin = cout
        self.head_pool = head_pool
        features = cin * head_pool**rank
        self.fc_names = []
        for j, hidden in enumerate(classifier):
            setattr(self, f"fc_{j}", nnx.Linear(features, hidden, rngs=rngs))
            self.fc_names.append(f"fc_{j}")
            features = hidden
        self.head = nnx.Linear(features, num_classes, rngs=rngs)
        self.spatial_out = spatial

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        mask: jax.Array | None = None,
        representations: list | None = None,
    ) -> jax.Array:
        """Logits; ``representations`` (a list), if given, receives ``(name, activation)``
        after every layer (see ``FunctionalModel.representations``)."""
        i = 0
        for item in self.plan:
            if item == "M":
                x = max_pool(x, 2, 2)
                continue
            x = getattr(self, f"conv_{i}")(x)
            x = jax.nn.relu(apply_norm(getattr(self, f"norm_{i}"), x, train=train, mask=mask))
            keep(representations, f"conv_{i}", x)
            i += 1
        x = adaptive_avg_pool(x, self.head_pool).reshape(x.shape[0], -1)
        for name in self.fc_names:
            x = jax.nn.relu(getattr(self, name)(x))
            keep(representations, name, x)
        logits = self.head(x)
        keep(representations, "head", logits)
        return logits


def vgg_receptive_path(depth: int, kernel_size: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, dilation) of every conv and pool up to the last conv, in order."""
    plan = VGG_TABLE[depth]
    last = max(i for i, item in enumerate(plan) if item != "M")
    return [(2, 2, 1) if item == "M" else (kernel_size, 1, 1) for item in plan[: last + 1]]


def vgg_min_input(depth: int) -> int:
    """Smallest spatial size that survives the table's pools (each halves, flooring)."""
    return 2 ** sum(item == "M" for item in VGG_TABLE[depth])


__all__ = ["VGG", "VGG_TABLE", "vgg_min_input", "vgg_receptive_path"]
