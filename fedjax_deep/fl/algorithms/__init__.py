"""Federated algorithms as one interface of pure functions, vmapped by the round over clients.

An :class:`Algorithm` is seven pure functions (FedJAX's ``client_init / client_step /
client_final`` split with the server side as an optax-style pair; no Python loop over clients):

| function | signature | called |
|---|---|---|
| ``server_init`` | ``params -> rule_state`` | once |
| ``persistent_init`` | ``params -> one client's persistent state`` (``{}``: none) | once, for the population ``[P, ...]`` |
| ``client_init`` | ``(rule_state, persistent, start_params) -> (start_params, ctx)`` | per client (vmapped) |
| ``grad_hook`` | ``(grads, params, ctx) -> grads``, or None | every local step |
| ``client_final`` | ``(rule_state, start_params, end_params, ctx, persistent, num_steps) -> (output, persistent)`` | per client (vmapped) |
| ``server_apply`` | ``(params, rule_state, outputs [C, ...], weights [C], axis_name) -> (params, rule_state)`` | once per round |

``num_steps`` is the client's real local steps this round (0 for a padding client or one whose
update was skipped as non-finite: algorithms then leave its persistent state unchanged).
``axis_name`` names the client axis when it is sharded (sums over clients must ``psum`` it).
Per-client persistent state lives in the round's population container
(``SimState.clients['algorithm']``), gathered for the cohort and scattered back by the round.

Algorithms: :func:`fedavg` (with any server optax optimizer: FedAvgM, FedAdam, FedYogi,
FedAdagrad), :func:`fedprox`, :func:`scaffold`, :func:`fednova`, :func:`feddyn`, :func:`fedbn`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from fedjax_deep.types import Params, PyTree


class Algorithm(NamedTuple):
    """A federated algorithm (see the module docstring for each function's contract)."""

    server_init: Callable[[Params], PyTree]
    persistent_init: Callable[[Params], PyTree]
    client_init: Callable[..., tuple[Params, Any]]
    grad_hook: Callable[..., PyTree] | None
    client_final: Callable[..., tuple[PyTree, PyTree]]
    server_apply: Callable[..., tuple[Params, PyTree]]
    name: str = "fedavg"


from fedjax_deep.fl.algorithms.fedavg import fedavg  # noqa: E402
from fedjax_deep.fl.algorithms.fedbn import fedbn  # noqa: E402
from fedjax_deep.fl.algorithms.feddyn import feddyn  # noqa: E402
from fedjax_deep.fl.algorithms.fednova import fednova  # noqa: E402
from fedjax_deep.fl.algorithms.fedprox import fedprox  # noqa: E402
from fedjax_deep.fl.algorithms.scaffold import scaffold  # noqa: E402

ALGORITHMS = ("fedavg", "fedprox", "scaffold", "fednova", "feddyn", "fedbn")

__all__ = ["ALGORITHMS", "Algorithm", "fedavg", "fedbn", "feddyn", "fednova", "fedprox", "scaffold"]
