"""Federated training as pure functions: one client's local training and the jitted round."""

from fedjax_deep.fl.client import ClientState, make_client_grad, make_client_update
from fedjax_deep.fl.round import (
    ServerState,
    SimState,
    as_algorithm,
    broadcast_clients,
    init_server_state,
    injected_hparams,
    make_round,
    make_seeded_round,
    round_client_keys,
    sample_cohort,
    stack_members,
    stack_seeds,
    sweep_over_members,
)

__all__ = [
    "ClientState",
    "ServerState",
    "SimState",
    "as_algorithm",
    "broadcast_clients",
    "init_server_state",
    "injected_hparams",
    "make_client_grad",
    "make_client_update",
    "make_round",
    "make_seeded_round",
    "round_client_keys",
    "sample_cohort",
    "stack_members",
    "stack_seeds",
    "sweep_over_members",
]
