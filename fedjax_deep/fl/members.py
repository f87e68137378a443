"""The member (sweep) axis: independent simulations that share shapes, stacked on a leading
``[R, ...]`` axis and advanced by one compiled program.

The seeds and learning rates of a sweep are such members. Each member's hyper-parameters travel in
its own state (``optax.inject_hyperparams``, the algorithms' coefficients in ``rule_state``), so
stacking the states (:func:`stack_members`) is all it takes to sweep them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sweep_over_members(fn, how: str = "vmap", in_axes=0):
    """``fn`` over a leading member axis.

    Args:
      fn: e.g. a round function ``(sim_state, client_data, key) -> (sim_state, metrics)``.
      how: ``'vmap'`` (one batched program: fills an accelerator) or ``'map'`` (``lax.map``: one
        member after another inside the program, each computing exactly what it computes alone).
      in_axes: per argument, ``0`` (stacked ``[R, ...]``: :func:`stack_members`) or ``None``
        (shared by every member, passed once: data that members have in common).
    """
    if how == "vmap":
        return jax.vmap(fn, in_axes=in_axes)
    if how != "map":
        raise ValueError(f"how={how!r}: use 'vmap' or 'map'")

    def mapped(*args):
        axes = in_axes if isinstance(in_axes, tuple | list) else (in_axes,) * len(args)
        stacked = tuple(a for a, ax in zip(args, axes, strict=True) if ax == 0)

        def one(xs):
            it = iter(xs)
            return fn(*(next(it) if ax == 0 else a for a, ax in zip(args, axes, strict=True)))

        return jax.lax.map(one, stacked)

    return mapped


def stack_members(trees):
    """Stacks pytrees of equal structure and shapes on a new leading member axis ``[R, ...]``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
