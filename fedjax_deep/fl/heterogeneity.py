"""Heterogeneous local work inside the one compiled round: per-client step budgets, dropouts and
stragglers, all as masks (no shape changes, so the round never recompiles).

Each round every client gets a step budget, an int32 in ``[0, S]`` (``S``: the round's static
number of local steps): its fixed budget from a list, or one drawn from a stated distribution;
a straggler then completes only a fraction of it, and a client that drops out gets 0. The client
takes its first ``budget`` real steps and keeps its state through the rest of the scan
(:func:`fedjax_deep.fl.client.make_client_update`). A client with budget 0 contributes weight 0 and
takes no step, so algorithms leave its persistent state (control variates, FedBN's statistics)
untouched. Every draw uses the key ``fold_in(fold_in(round_key, client_id), 2)``: it depends only
on the round's key and the client's id, never on the cohort's order, so a resumed run draws the
same budgets.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from fedjax_deep.fl import clients
from fedjax_deep.types import Metrics

BUDGET_DISTS = ("none", "uniform")
_BUDGET_STREAM = 2  # round_client_keys uses 0 (batches) and 1 (training)


@dataclasses.dataclass(frozen=True)
class Heterogeneity:
    """How much local work each client does in a round (static: compiled into the round).

    Attributes:
      step_budgets: a fixed budget per client of the population, indexed by client id (``()``:
        none); budgets above ``S`` take ``S``.
      budget_dist: ``'uniform'``: each round, each client's budget is drawn uniformly from the
        integers ``[max(1, ceil(budget_min_fraction * S)), S]``; ``'none'``: no draw.
      budget_min_fraction: the smallest uniform budget as a share of ``S``.
      dropout_rate: each round, each client drops out (budget 0) with this probability.
      straggler_rate, straggler_fraction: each round, each client straggles with probability
        ``straggler_rate`` and then completes ``max(1, floor(straggler_fraction * budget))``
        steps.
    """

    step_budgets: tuple[int, ...] = ()
    budget_dist: str = "none"
    budget_min_fraction: float = 0.5
    dropout_rate: float = 0.0
    straggler_rate: float = 0.0
    straggler_fraction: float = 0.5

    def __post_init__(self):
        if self.budget_dist not in BUDGET_DISTS:
            raise ValueError(f"budget_dist {self.budget_dist!r}: use one of {BUDGET_DISTS}")
        if self.step_budgets and self.budget_dist != "none":
            raise ValueError("give fixed step_budgets or a budget_dist, not both")

    @property
    def active(self) -> bool:
        """Whether any client may do less than all its steps (False: the round is unchanged)."""
        return bool(
            self.step_budgets
            or self.budget_dist != "none"
            or self.dropout_rate > 0
            or self.straggler_rate > 0
        )


def client_budgets(
    spec: Heterogeneity, key: jax.Array, client_ids: jax.Array, num_steps: int
) -> jax.Array:
    """Each client's step budget this round: ``client_ids [C]`` -> ``[C]`` int32 in ``[0, S]``.

    ``key`` is the round's key; ``num_steps`` is ``S`` (static).
    """

    def one(client_id):
        k = jax.random.fold_in(jax.random.fold_in(key, client_id), _BUDGET_STREAM)
        k_budget, k_straggle, k_drop = jax.random.split(k, 3)
        budget = jnp.asarray(num_steps, jnp.int32)
        if spec.step_budgets:
            table = jnp.asarray(spec.step_budgets, jnp.int32)
            budget = jnp.minimum(jnp.take(table, client_id, mode="clip"), num_steps)
        if spec.budget_dist == "uniform":
            low = max(1, math.ceil(spec.budget_min_fraction * num_steps))
            budget = jax.random.randint(k_budget, (), low, num_steps + 1, jnp.int32)
        if spec.straggler_rate > 0:
            partial = jnp.floor(spec.straggler_fraction * budget).astype(jnp.int32)
            straggles = jax.random.uniform(k_straggle) < spec.straggler_rate
            budget = jnp.where(straggles, jnp.maximum(partial, jnp.minimum(budget, 1)), budget)
        if spec.dropout_rate > 0:
            budget = jnp.where(jax.random.uniform(k_drop) < spec.dropout_rate, 0, budget)
        return budget

    return jax.vmap(one)(client_ids)


def available_weights(weights: jax.Array, budgets: jax.Array, axis_name=None) -> jax.Array:
    """``weights [C]`` renormalized over the clients with a positive budget (0 for those that
    dropped out; all 0 when every client did)."""
    kept = jnp.where(budgets > 0, weights, 0.0)
    total = clients.sum(kept, axis_name)
    return jnp.where(total > 0, kept / jnp.where(total > 0, total, 1.0), 0.0)


def work_metrics(
    steps_taken: jax.Array, budgets: jax.Array, num_examples: jax.Array, axis_name=None
) -> Metrics:
    """The round's local work: ``train/steps_mean`` and ``train/steps_min`` (real steps taken, over
    the clients that hold data and did not drop out; 0 when none did) and
    ``train/dropped_clients`` (clients holding data whose budget was 0). All ``[C]`` -> scalars."""
    holds = num_examples > 0
    took_part = holds & (budgets > 0)
    count = clients.sum(took_part.astype(jnp.int32), axis_name)
    steps = steps_taken.astype(jnp.float32)
    total = clients.sum(jnp.where(took_part, steps, 0.0), axis_name)
    low = jnp.min(jnp.where(took_part, steps, jnp.inf))
    if axis_name:
        low = jax.lax.pmin(low, axis_name)
    return {
        "train/steps_mean": total / jnp.maximum(count, 1).astype(jnp.float32),
        "train/steps_min": jnp.where(count > 0, low, 0.0),
        "train/dropped_clients": clients.sum((holds & (budgets == 0)).astype(jnp.int32), axis_name),
    }
