"""User-level DP-FedAvg inside the round: clipping, Gaussian noise, Poisson cohorts.

McMahan et al. 2018 ("Learning differentially private recurrent language models"), as TFF and
pfl-research define DP-FedAvg: each client's update ``Delta_k = trained_k - server`` is clipped to
L2 norm ``S`` (flat over the whole update, or per layer with ``S / sqrt(L)`` per leaf so the whole
update still has norm at most ``S``), the clipped updates are summed, Gaussian noise of standard
deviation ``z * S`` is added to the sum, and the sum is divided by the EXPECTED cohort size ``m``
(never the realized one: the realized size would leak who took part). The server optimizer then
takes ``-noisy_mean`` as its pseudo-gradient, as FedAvg's does.

Adaptive clipping (Andrew et al. 2021, "Differentially private learning with adaptive clipping"):
each client also reports ``b_k = [||Delta_k|| <= S]``; the server forms the noised fraction
``b = (sum_k b_k + N(0, sigma_b^2)) / m`` and moves ``S <- S * exp(-eta * (b - gamma))`` toward the
``gamma`` quantile of the update norms. The two releases share the privacy budget: the update's
noise multiplier is ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so that together they are one
Gaussian mechanism of multiplier ``z`` (their Theorem 1), which is what the accountant is given.

The pieces are pure functions over stacked pytrees (``client_deltas: [C, ...]``) used by
:func:`private`, an :class:`~fedjax_deep.fl.algorithms.Algorithm` wrapper around an algorithm whose
clients send their trained model (FedAvg, FedProx). Its coefficients (``z``, ``S``, the adaptive
clipping's target and rate) live in the server state, so a sweep over them, over learning rates and
seeds, is one compiled program. Its noise key is ``fold_in(round_key, NOISE_TAG)``
(:data:`NOISE_TAG` lies above every client id, so it never meets a client's key): a resumed run
draws the same noise.

Poisson cohorts (:func:`sample_poisson_cohort`): every client takes part independently with
probability ``q``; the cohort is a fixed number ``cap`` of slots, the slots of clients not drawn are
padding (zero examples: they train no step and weigh nothing). The accounting lives outside the
round (:mod:`fedjax_deep.accounting`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms.base import Algorithm
from fedjax_deep.types import Params, PyTree

# fold_in(round_key, NOISE_TAG): above fl.num_clients' bound (10^6), so never a client's own key.
NOISE_TAG = 2**31 - 7


def update_norms(client_deltas: PyTree, per_layer: bool = False) -> jax.Array:
    """The L2 norm of each client's update: ``[C, ...]`` -> ``[C]`` (flat), or ``[C, L]`` per
    leaf (``per_layer``)."""
    leaves = jax.tree.leaves(client_deltas)
    sq = [jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in leaves]
    if per_layer:
        return jnp.sqrt(jnp.stack(sq, axis=1))
    return jnp.sqrt(sum(sq))


def clip_scales(norms: jax.Array, clip_norm: jax.Array, num_leaves: int) -> jax.Array:
    """``min(1, bound / norm)`` per client (``norms [C]``) or per client and leaf (``[C, L]``, the
    bound then ``clip_norm / sqrt(L)``); exactly 1 for an update within the bound, so an infinite
    ``clip_norm`` leaves every update as it is, bit for bit."""
    bound = clip_norm if norms.ndim == 1 else clip_norm / jnp.sqrt(float(num_leaves))
    bound = jnp.asarray(bound, norms.dtype)
    return jnp.where(norms > bound, bound / jnp.where(norms > 0, norms, 1.0), 1.0)


def clip_updates(
    client_deltas: PyTree, clip_norm: jax.Array, per_layer: bool = False
) -> tuple[PyTree, jax.Array]:
    """Each client's update clipped to L2 norm ``clip_norm``: ``(clipped [C, ...], norms [C])``.

    ``per_layer``: each of the ``L`` leaves is clipped to ``clip_norm / sqrt(L)`` (the whole update
    then has norm at most ``clip_norm``, the same sensitivity); ``norms`` is still the flat norm
    before clipping (what adaptive clipping counts)."""
    leaves, treedef = jax.tree.flatten(client_deltas)
    norms = update_norms(client_deltas, per_layer)
    scales = clip_scales(norms, clip_norm, len(leaves))
    out = []
    for i, x in enumerate(leaves):
        s = scales if scales.ndim == 1 else scales[:, i]
        out.append(x * s.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)))
    flat = norms if norms.ndim == 1 else jnp.sqrt(jnp.sum(jnp.square(norms), axis=1))
    return jax.tree.unflatten(treedef, out), flat


def gaussian_noise(key: jax.Array, like: PyTree, stddev: jax.Array) -> PyTree:
    """``N(0, stddev^2)`` shaped like ``like`` (one key per leaf, folded from ``key``)."""
    leaves, treedef = jax.tree.flatten(like)
    noise = [
        jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        * jnp.asarray(stddev, x.dtype)
        for i, x in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, noise)


def noisy_sum(
    key: jax.Array, clipped: PyTree, mask: jax.Array, stddev: jax.Array, axis_name=None
) -> PyTree:
    """``sum_k mask[k] * clipped[k] + N(0, stddev^2)``: ``[C, ...]``, ``mask [C]`` -> ``[...]``.

    The noise is drawn once from ``key`` after the sum over every device's clients (so sharded
    clients add it once); ``stddev`` 0 adds exact zeros."""
    total = clients.weighted_mean(clipped, mask, axis_name)
    return jax.tree.map(jnp.add, total, gaussian_noise(key, total, stddev))


def private_mean_params(
    key: jax.Array,
    server_params: Params,
    client_params: Params,
    mask: jax.Array,
    expected: int,
    clip_norm: jax.Array,
    noise_stddev: jax.Array,
    per_layer: bool = False,
    axis_name=None,
) -> tuple[Params, jax.Array]:
    """The server model plus DP-FedAvg's noisy mean update: ``(server + (sum_k mask_k clip(Delta_k)
    + N(0, noise_stddev^2)) / expected, norms [C])``.

    ``client_params: [C, ...]``, ``mask: [C]`` (1 for a client that took part). Written as a
    weighted mean of the clipped client models, ``sum_k (mask_k / m) (server + clip(Delta_k)) +
    (1 - count / m) server``, and a client within the bound enters as its own model: with a full
    cohort, equal client sizes, ``z = 0`` and ``S = inf`` this is FedAvg's weighted mean bit for
    bit (``count = m`` makes the second term an exact zero)."""
    deltas = jax.tree.map(lambda c, s: c - s[None], client_params, server_params)
    clipped, norms = clip_updates(deltas, clip_norm, per_layer)
    within = norms <= clip_norm if not per_layer else None
    clipped_params = jax.tree.map(
        lambda c, d, s: _keep_within(c, s[None] + d, within), client_params, clipped, server_params
    )
    m = float(expected)
    dtype = mask.dtype
    weights = mask / jnp.asarray(m, dtype)
    mean = clients.weighted_mean(clipped_params, weights, axis_name)
    count = clients.sum(mask, axis_name)
    rest = (jnp.asarray(m, dtype) - count) / jnp.asarray(m, dtype)
    noise = gaussian_noise(key, server_params, noise_stddev / m)
    out = jax.tree.map(lambda a, s, n: a + rest.astype(s.dtype) * s + n, mean, server_params, noise)
    return out, norms


def _keep_within(client, clipped, within):
    if within is None:
        return clipped
    return jnp.where(within.reshape((-1,) + (1,) * (client.ndim - 1)), client, clipped)


def adaptive_stddevs(noise_multiplier, count_stddev):
    """``(z_Delta, sigma_b)``: the update's and the clipped count's noise multipliers that together
    spend the budget of one Gaussian mechanism of multiplier ``z`` (Andrew et al. 2021, Thm. 1;
    needs ``z < 2 sigma_b``). ``z = 0`` (no privacy) adds no noise to either."""
    z = noise_multiplier
    on = z > 0
    inv = jnp.where(on, z, 1.0) ** -2 - (2.0 * count_stddev) ** -2
    z_delta = jnp.where(on, jnp.where(inv > 0, inv, jnp.nan) ** -0.5, 0.0)
    return z_delta, jnp.where(on, count_stddev, 0.0)


def private(
    algorithm: Algorithm,
    *,
    noise_multiplier: float,
    clip_norm: float,
    expected_cohort: int,
    per_layer: bool = False,
    adaptive_quantile: float = 0.0,
    adaptive_lr: float = 0.2,
    adaptive_count_stddev: float = 0.0,
) -> Algorithm:
    """``algorithm`` (whose clients send their trained model: FedAvg, FedProx) with DP-FedAvg's
    aggregation: clip each update to ``clip_norm``, add noise ``z * S`` to the sum, divide by
    ``expected_cohort``; then the algorithm's own server update on that mean (its server
    optimizer).

    The server state is ``{'inner': the algorithm's, 'noise_multiplier', 'clip_norm', ...}``:
    ``z`` and ``S`` are traced (a sweep stacks them). ``adaptive_quantile`` > 0
    turns on adaptive clipping toward that quantile at rate ``adaptive_lr`` with count noise
    ``adaptive_count_stddev`` (0: ``expected_cohort / 20``, the paper's choice). The round passes
    ``server_apply`` a key and logs the metrics it returns (``Algorithm.server_key``):
    ``privacy/clip_norm`` (the bound used this round), ``privacy/unclipped_fraction``.
    """
    adaptive = adaptive_quantile > 0
    m = int(expected_cohort)
    count_stddev = adaptive_count_stddev or m / 20.0

    def server_init(params):
        state = {
            "inner": algorithm.server_init(params),
            "noise_multiplier": jnp.asarray(noise_multiplier, jnp.float32),
            "clip_norm": jnp.asarray(clip_norm, jnp.float32),
        }
        if adaptive:
            state["target_quantile"] = jnp.asarray(adaptive_quantile, jnp.float32)
            state["adaptive_lr"] = jnp.asarray(adaptive_lr, jnp.float32)
            state["count_stddev"] = jnp.asarray(count_stddev, jnp.float32)
        return state

    def server_apply(params, rule_state, outputs, weights, axis_name=None, *, key):
        dtype = weights.dtype
        z, clip = rule_state["noise_multiplier"], rule_state["clip_norm"]
        if adaptive:
            z, count_sigma = adaptive_stddevs(z, rule_state["count_stddev"])
        # z * S is 0 for z = 0 even when S is infinite (no 0 * inf).
        stddev = jnp.where(z > 0, z * clip, 0.0)
        mask = (weights > 0).astype(dtype)
        update_key, count_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        mean, norms = private_mean_params(
            update_key, params, outputs, mask, m, clip, stddev, per_layer, axis_name
        )
        unclipped = clients.sum(mask * (norms <= clip).astype(dtype), axis_name)
        count = jnp.maximum(clients.sum(mask, axis_name), 1.0)
        new = dict(rule_state)
        metrics = {"privacy/unclipped_fraction": unclipped / count, "privacy/clip_norm": clip}
        if adaptive:
            noised = unclipped + jax.random.normal(count_key, (), dtype) * count_sigma
            fraction = noised / m
            rate, target = rule_state["adaptive_lr"], rule_state["target_quantile"]
            new["clip_norm"] = clip * jnp.exp(-rate * (fraction - target))
        one = jnp.ones((1,), dtype)
        stacked = jax.tree.map(lambda x: x[None], mean)
        params, new["inner"] = algorithm.server_apply(params, rule_state["inner"], stacked, one)
        return params, new, metrics

    def client_init(rule_state, persistent, start):
        return algorithm.client_init(rule_state["inner"], persistent, start)

    def client_final(rule_state, start, end, ctx, persistent, num_steps):
        return algorithm.client_final(rule_state["inner"], start, end, ctx, persistent, num_steps)

    return algorithm.replace(
        name=f"dp_{algorithm.name}",
        server_init=server_init,
        server_apply=server_apply,
        client_init=client_init,
        client_final=client_final,
        server_key=True,
    )


def noise_multiplier_of(rule_state) -> jax.Array | None:
    """The noise multiplier a :func:`private` algorithm's server state holds (``[R]`` on a sweep
    axis), None for any other algorithm's: what the host's accountant reads back."""
    if isinstance(rule_state, dict) and "noise_multiplier" in rule_state:
        return rule_state["noise_multiplier"]
    return None


def sample_poisson_cohort(
    key: jax.Array, num_examples: jax.Array, rate: float, cap: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A Poisson cohort in ``cap`` fixed slots: every client that holds data (``num_examples [P] >
    0``) takes part independently with probability ``rate``.

    Returns ``(ids [cap], taking_part [cap] bool, overflow)``: the drawn clients first (in a
    uniformly random order), then clients not drawn as padding (``taking_part`` False: the caller
    gives them zero examples); ``overflow`` is how many drawn clients found no slot (dropped; the
    cap is chosen so that this is vanishingly rare: :func:`fedjax_deep.accounting.poisson_cap`)."""
    scores = jax.random.uniform(key, num_examples.shape)
    drawn = (scores < rate) & (num_examples > 0)
    order = jnp.argsort(jnp.where(drawn, scores, 2.0 + scores))[:cap].astype(jnp.int32)
    taking_part = drawn[order]
    overflow = jnp.sum(drawn) - jnp.sum(taking_part)
    return order, taking_part, overflow
