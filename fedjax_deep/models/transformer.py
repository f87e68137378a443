"""The transformer family: pre-norm blocks of a ``depth`` and a ``width``, for the depth question
asked of transformers.

Two variants share one block (:class:`Block`: ``x + attn(LayerNorm(x))``, then
``x + mlp(LayerNorm(x))``, an MLP of ``mlp_ratio * width`` hidden units with GELU):

- ``transformer``: next-token prediction on int token sequences, ``x [B, T] -> logits [B, T, V]``;
  token and learned position embeddings, **causal** multi-head self-attention.
- ``vit``: images, ``x [B, H, W, C] -> logits [B, classes]``; non-overlapping ``patch_size``
  patches embedded by one matrix product, learned position embeddings, a class token
  (``pool='cls'``) or the mean over patches (``pool='mean'``), **no** mask.

Attention is plain einsums (under ``vmap`` over clients they become batched matrix products on
CPU; no convolution anywhere). The forward pass is a
:class:`~fedjax_deep.models.layers.Classifier` plan of blocks, so representation capture, layer
names and the (absent) receptive path come from the one interpreter every family uses.

Parameter paths name the block: ``embed/kernel`` (``[V, D]``, the token table, or the patch
projection ``[P*P*C, D]``), ``blocks_{i}/attn/qkv/kernel`` (``[D, 3D]``),
``blocks_{i}/attn/out/kernel``, ``blocks_{i}/mlp/fc1/kernel``, ``blocks_{i}/mlp/fc2/kernel``,
``head/kernel``; so the per-layer divergence metrics (one module's kernel = one layer) group by
block through their path prefix. Position embeddings, the class token, biases and LayerNorm
scales are per-leaf entries that never enter the layer mean, like every family's biases.

Precision: under the ``bf16`` policy :class:`~fedjax_deep.models.FunctionalModel` casts the
input to bfloat16; token ids are cast back to int32 here (exact for vocabularies up to 256, which
:func:`Transformer.__init__` enforces), and the attention softmax runs in float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from fedjax_deep.errors import FieldError
from fedjax_deep.models.layers import Classifier

POOLS = ("cls", "mean")
MAX_VOCAB = 256  # token ids survive a round trip through bfloat16 exactly up to 256
_init = nnx.initializers.normal(0.02)  # GPT-2's init: embeddings and position tables


def check_transformer_config(cfg, input_shape) -> None:
    """The family's knob checks against the data; raises
    :class:`~fedjax_deep.errors.FieldError` naming the field."""
    if cfg.width % cfg.heads:
        raise FieldError("model.width", cfg.width, f"must be a multiple of model.heads={cfg.heads}")
    if cfg.name == "transformer" and len(input_shape) != 1:
        raise FieldError(
            "model.name", cfg.name,
            f"takes token sequences [T]; this dataset's examples are {tuple(input_shape)}: use "
            "'vit' for images or a sequence dataset (data.name='tinygrammar')",
        )  # fmt: skip
    if cfg.name == "vit":
        if len(input_shape) != 3:
            raise FieldError(
                "model.name", cfg.name,
                f"takes images [H, W, C]; this dataset's examples are {tuple(input_shape)}: use "
                "'transformer' for token sequences",
            )  # fmt: skip
        h, w = input_shape[:2]
        if h % cfg.patch_size or w % cfg.patch_size:
            raise FieldError(
                "model.patch_size", cfg.patch_size, f"must divide the {h}x{w} images, e.g. 4"
            )


class Embed(nnx.Module):
    """The input side as one module: token ids ``[B, T]`` looked up in ``kernel [V, D]``, or an
    image ``[B, H, W, C]`` cut into ``patch`` x ``patch`` patches projected by ``kernel
    [P*P*C, D]`` (with a class token ``cls`` first when ``cls_token``); then learned positions
    ``pos`` are added. ``kernel`` is the family's input-side layer for the divergence metrics."""

    def __init__(self, rows: int, positions: int, features: int, *, patch: int, cls_token: bool,
                 rngs: nnx.Rngs):  # fmt: skip
        self.patch = patch
        init = nnx.initializers.lecun_normal() if patch else _init
        self.kernel = nnx.Param(init(rngs.params(), (rows, features)))
        self.pos = nnx.Param(_init(rngs.params(), (positions, features)))
        self.cls = nnx.Param(jnp.zeros((1, 1, features))) if cls_token else None

    def __call__(self, x, *, train, mask):
        del train, mask
        kernel = self.kernel[...]
        if self.patch:  # [B, H, W, C] -> [B, (H/P)(W/P), P*P*C], patches in row-major order
            b, h, w, c = x.shape
            p = self.patch
            x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
            x = x.reshape(b, (h // p) * (w // p), p * p * c) @ kernel
        else:
            x = jnp.take(kernel, x.astype(jnp.int32), axis=0)
        if self.cls is not None:
            cls = jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[2]))
            x = jnp.concatenate([cls, x], axis=1)
        return x + self.pos[...][None]

    def layer_names(self, prefix: str) -> list[str]:
        return [prefix]

    def receptive_path(self) -> list:
        return []


class Attention(nnx.Module):
    """Multi-head self-attention, ``[B, T, D] -> [B, T, D]``; ``causal``: position ``t`` attends to
    positions ``<= t`` only."""

    def __init__(self, features: int, heads: int, *, causal: bool, rngs: nnx.Rngs):
        self.heads, self.causal = heads, causal
        self.qkv = nnx.Linear(features, 3 * features, rngs=rngs)
        self.out = nnx.Linear(features, features, rngs=rngs)

    def __call__(self, x):
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, H, Dh]
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.heads)
        scores = scores.astype(jnp.float32)
        if self.causal:
            allowed = jnp.tril(jnp.ones((1, 1, t, t), bool))
            scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        return self.out(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, d))


class MLP(nnx.Module):
    """``[..., D] -> [..., D]`` through ``hidden`` GELU units."""

    def __init__(self, features: int, hidden: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(features, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, features, rngs=rngs)

    def __call__(self, x):
        return self.fc2(jax.nn.gelu(self.fc1(x)))


class Block(nnx.Module):
    """A pre-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, features: int, heads: int, mlp_ratio: int, *, causal: bool, rngs):
        self.ln1 = nnx.LayerNorm(features, rngs=rngs)
        self.attn = Attention(features, heads, causal=causal, rngs=rngs)
        self.ln2 = nnx.LayerNorm(features, rngs=rngs)
        self.mlp = MLP(features, mlp_ratio * features, rngs=rngs)

    def __call__(self, x, *, train, mask):
        del train, mask  # no BatchNorm: nothing depends on the mode or the padding
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def layer_names(self, prefix: str) -> list[str]:
        return [f"{prefix}/{m}" for m in ("attn/qkv", "attn/out", "mlp/fc1", "mlp/fc2")]

    def receptive_path(self) -> list:
        return []


class FinalNorm(nnx.LayerNorm):
    """The final LayerNorm, then (``pool``) the class token, the mean over positions, or every
    position (``'none'``: sequences)."""

    def __init__(self, features: int, pool: str, *, rngs: nnx.Rngs):
        super().__init__(features, rngs=rngs)
        self.pool = pool

    def __call__(self, x, *, train, mask):
        del train, mask
        x = super().__call__(x)
        if self.pool == "cls":
            return x[:, 0]
        return jnp.mean(x, axis=1) if self.pool == "mean" else x

    def layer_names(self, prefix: str) -> list[str]:
        return []

    def receptive_path(self) -> list:
        return []


class Transformer(Classifier):
    """A pre-norm transformer of ``depth`` blocks at model dimension ``width``.

    Args:
      input_shape: ``(T,)`` token sequences (the ``transformer`` variant) or ``(H, W, C)`` images
        (``vit``).
      num_classes: the vocabulary ``V`` (sequences: logits ``[B, T, V]``) or the classes (images:
        logits ``[B, classes]``).
      depth: blocks (>= 1). width: model dimension ``D``, a multiple of ``heads``.
      heads: attention heads. mlp_ratio: MLP hidden units per model dimension.
      patch_size: images only, the side of a square patch (divides H and W).
      pool: images only, ``'cls'`` (a class token) or ``'mean'`` (over patches).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int,
        width: int,
        heads: int = 4,
        mlp_ratio: int = 4,
        patch_size: int = 4,
        pool: str = "cls",
        rngs: nnx.Rngs,
    ):
        image = len(input_shape) == 3
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        if image:
            h, w, c = input_shape
            if h % patch_size or w % patch_size:
                raise ValueError(f"patch_size={patch_size} does not divide {h}x{w} images")
            if pool not in POOLS:
                raise ValueError(f"pool={pool!r}: use one of {POOLS}")
            positions = (h // patch_size) * (w // patch_size) + (pool == "cls")
            self.embed = Embed(patch_size * patch_size * c, positions, width, patch=patch_size,
                               cls_token=pool == "cls", rngs=rngs)  # fmt: skip
        else:
            if num_classes > MAX_VOCAB:
                raise ValueError(f"vocabulary {num_classes} > {MAX_VOCAB} (bfloat16 token ids)")
            self.embed = Embed(num_classes, input_shape[0], width, patch=0, cls_token=False,
                               rngs=rngs)  # fmt: skip
        plan = [("block", "embed"), ("keep", "embed")]
        for i in range(depth):
            setattr(self, f"blocks_{i}", Block(width, heads, mlp_ratio, causal=not image,
                                               rngs=rngs))  # fmt: skip
            plan += [("block", f"blocks_{i}"), ("keep", f"blocks_{i}")]
        self.final_norm = FinalNorm(width, pool if image else "none", rngs=rngs)
        self.plan = (*plan, ("block", "final_norm"))
        self.head = nnx.Linear(width, num_classes, rngs=rngs)
