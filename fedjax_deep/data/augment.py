"""On-device data augmentation, applied per local step inside the jitted round.

Each function maps ``(key, x [B, H, W, C]) -> x`` and is pure: the round derives one key per client
and local step from ``fold_in(round_key, client_id)``, so a resumed run draws the same crops and
flips. Padding examples are augmented too; the mask keeps them out of the loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.errors import FieldError

AUGMENTATIONS = ("none", "crop_flip")


def crop_flip(key: jax.Array, x: jax.Array, pad: int = 4) -> jax.Array:
    """Random crop after zero padding by ``pad`` pixels, then a random horizontal flip (the
    standard CIFAR augmentation). ``x``: ``[B, H, W, C]``."""
    b, h, w, c = x.shape
    k_crop, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(k_flip, 0.5, (b,))
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(image, offset, flip):
        crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
        return jnp.where(flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, offsets, flips)


def make_augment(name: str):
    """The augmentation named ``name`` (None for ``'none'``)."""
    if name == "none":
        return None
    if name == "crop_flip":
        return crop_flip
    raise FieldError("data.augment", name, f"use one of {', '.join(AUGMENTATIONS)}")
