"""The privacy accountant of DP-FedAvg runs: host-side, a pure function of (sampling, z, rounds).

The round (:mod:`fedjax_deep.fl.privacy`) adds the noise; this module says what it buys, with
Google's ``dp-accounting`` library (RDP and PLD accountants), never inside the jitted round. One
round is one :class:`dp_accounting.DpEvent` for the cohort sampling in use:

| ``Sampling.kind`` | event per round | neighbouring relation |
|---|---|---|
| ``full`` (every client, every round) | ``GaussianDpEvent(z)`` | add or remove one user |
| ``poisson`` (each client with ``q = m / P``) | ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` | add or remove one user |
| ``fixed`` (``m`` of ``P`` without replacement) | ``SampledWithoutReplacementDpEvent(P, m, GaussianDpEvent(z / 2))`` | replace one user (RDP only) |

Under replace-one a user's clipped update can move the sum by ``2 S``, hence ``z / 2`` for fixed-size
cohorts (dp-accounting's multiplier is noise over sensitivity). Epsilon after ``T`` rounds is the
accountant's for ``T`` self-compositions, so nothing need be stored: a resumed run recomputes the
same numbers from its round count (:func:`epsilon`). :func:`calibrate` finds the noise multiplier
for a target ``(epsilon, delta, rounds)`` (``dp_accounting.calibrate_dp_mechanism``).

Poisson cohorts run in a fixed number of slots (:func:`poisson_cap`): a draw larger than the cap
drops the extra clients (counted in ``train/cohort_overflow``). The run with the cap differs from
exact Poisson sampling only on that event, of probability ``p`` per round, so it is
``(epsilon, delta + (1 + e^epsilon) T p)``-DP (a coupling bound: the two runs' outputs are within
``T p`` in total variation); the cap is chosen with ``p <= 1e-12`` and the extra term is reported
every round (``privacy/delta_overflow``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

ACCOUNTANTS = ("rdp", "pld")
SAMPLINGS = ("full", "poisson", "fixed")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How each round's cohort is drawn: ``kind`` (:data:`SAMPLINGS`), the population ``P`` (the
    clients holding data), the expected cohort ``m`` (``P`` for ``full``), and for Poisson the
    slots ``cap`` and the per-round overflow probability ``overflow_prob`` (0 when ``cap = P``)."""

    kind: str
    population: int
    expected: int
    cap: int = 0
    overflow_prob: float = 0.0

    @property
    def rate(self) -> float:
        return self.expected / self.population


def round_event(sampling: Sampling, noise_multiplier: float):
    """One round's ``DpEvent`` (the table above)."""
    import dp_accounting as dpa

    z = float(noise_multiplier)
    if sampling.kind == "full":
        return dpa.GaussianDpEvent(z)
    if sampling.kind == "poisson":
        return dpa.PoissonSampledDpEvent(sampling.rate, dpa.GaussianDpEvent(z))
    return dpa.SampledWithoutReplacementDpEvent(
        sampling.population, sampling.expected, dpa.GaussianDpEvent(z / 2.0)
    )


def make_accountant(name: str, sampling: Sampling):
    """A fresh ``dp_accounting`` accountant (``'rdp'`` or ``'pld'``) for ``sampling``'s relation."""
    import dp_accounting as dpa

    relation = dpa.NeighboringRelation.ADD_OR_REMOVE_ONE
    if sampling.kind == "fixed":
        if name == "pld":
            raise ValueError("PLD has no event for sampling without replacement; use rdp")
        relation = dpa.NeighboringRelation.REPLACE_ONE
    if name == "pld":
        return dpa.pld.PLDAccountant(relation)
    return dpa.rdp.RdpAccountant(neighboring_relation=relation)


@functools.lru_cache(maxsize=256)
def _one_round(sampling: Sampling, noise_multiplier: float, accountant: str):
    """An accountant that composed one round (its RDP vector or PLD is what T rounds scale)."""
    acc = make_accountant(accountant, sampling)
    acc.compose(round_event(sampling, noise_multiplier), 1)
    return acc


@functools.lru_cache(maxsize=4096)
def epsilon(
    sampling: Sampling, noise_multiplier: float, delta: float, rounds: int, accountant: str
) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds at noise multiplier ``z`` (``inf`` for
    ``z = 0`` with rounds > 0; 0 for no round).

    The same number as a fresh accountant composing the event ``rounds`` times (a test checks it),
    from one round's RDP vector times ``rounds`` (RDP composes additively) or one round's PLD
    self-composed: a round's event is computed once per run, not once per round."""
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    acc = _one_round(sampling, float(noise_multiplier), accountant)
    if accountant == "pld":
        return float(acc._pld.self_compose(rounds).get_epsilon_for_delta(delta))
    from dp_accounting.rdp import rdp_privacy_accountant

    return float(rdp_privacy_accountant.compute_epsilon(acc._orders, acc._rdp * rounds, delta)[0])


def calibrate(
    sampling: Sampling, target_epsilon: float, delta: float, rounds: int, accountant: str
) -> float:
    """The smallest noise multiplier (within 1e-6, rounded up, checked as float32) whose epsilon
    after ``rounds`` rounds is at most ``target_epsilon`` at ``delta``."""
    import dp_accounting as dpa
    import numpy as np

    def event(z):
        return dpa.SelfComposedDpEvent(round_event(sampling, z), rounds)

    z = dpa.calibrate_dp_mechanism(
        lambda: make_accountant(accountant, sampling), event, target_epsilon, delta, tol=1e-6
    )
    z = float(np.float32(z + 1e-6))
    while epsilon(sampling, z, delta, rounds, accountant) > target_epsilon:
        z = float(np.nextafter(np.float32(z), np.float32(np.inf)))
    return z


def poisson_cap(population: int, rate: float) -> tuple[int, float]:
    """``(cap, p)``: the fewest slots a Poisson cohort needs so that a draw over ``population + 1``
    users (the larger neighbour) exceeds them with probability ``p <= 1e-12`` per round. A cap
    that reaches the whole population is no cap (``(P, 0.0)``): every client has its slot, as a
    neighbour with one more user would, and the sampling is exactly Poisson. The cap depends on
    neither delta nor the round count, so only fields that shape the program fix it."""
    from scipy import stats

    n = population + 1
    cap = max(1, math.ceil(rate * n))
    while cap < population and stats.binom.sf(cap, n, rate) > 1e-12:
        cap += 1
    if cap >= population:
        return population, 0.0
    return cap, float(stats.binom.sf(cap, n, rate))


def overflow_delta(sampling: Sampling, eps: float, rounds: int) -> float:
    """The extra delta the Poisson cap costs after ``rounds`` rounds: ``(1 + e^eps) rounds p``."""
    if not sampling.overflow_prob:
        return 0.0
    if eps > 700:
        return math.inf
    return (1.0 + math.exp(eps)) * rounds * sampling.overflow_prob


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's privacy: its sampling, noise multiplier (given or calibrated), delta, accountant
    and budget (``target_epsilon``; 0: none)."""

    sampling: Sampling
    noise_multiplier: float
    delta: float
    accountant: str
    budget: float = 0.0
    calibrated: bool = False

    def epsilon(self, rounds: int, noise_multiplier: float | None = None) -> float:
        z = self.noise_multiplier if noise_multiplier is None else noise_multiplier
        return epsilon(self.sampling, float(z), self.delta, int(rounds), self.accountant)

    def allows(self, rounds: int, noise_multiplier: float | None = None) -> bool:
        """Whether ``rounds`` rounds stay within the budget (always, without one)."""
        return not self.budget or self.epsilon(rounds, noise_multiplier) <= self.budget

    def metrics(self, rounds: int, noise_multiplier: float | None = None) -> dict:
        """``privacy/epsilon`` after ``rounds`` rounds (and ``privacy/delta_overflow`` for capped
        Poisson cohorts)."""
        eps = self.epsilon(rounds, noise_multiplier)
        out = {"privacy/epsilon": eps}
        if self.sampling.kind == "poisson":
            out["privacy/delta_overflow"] = overflow_delta(self.sampling, eps, rounds)
        return out

    def describe(self) -> dict:
        """What ``run_info.json`` records."""
        s = self.sampling
        return {
            "sampling": s.kind, "population": s.population, "expected_cohort": s.expected,
            "poisson_slots": s.cap or None, "overflow_prob_per_round": s.overflow_prob,
            "noise_multiplier": self.noise_multiplier, "calibrated": self.calibrated,
            "delta": self.delta, "accountant": self.accountant, "target_epsilon": self.budget,
        }  # fmt: skip


def plan(config, population: int) -> Plan | None:
    """``config.privacy`` and ``config.fl.cohort_sampling`` for ``population`` clients holding
    data: None without Poisson cohorts or DP; the noise multiplier calibrated when
    ``privacy.target_epsilon`` > 0 and ``privacy.noise_multiplier`` is 0."""
    p, fl = config.privacy, config.fl
    m = fl.cohort_size if 0 < fl.cohort_size < population else population
    if fl.cohort_sampling == "poisson":
        m = min(fl.cohort_size, population)
        cap, prob = poisson_cap(population, m / population)
        sampling = Sampling("poisson", population, m, cap, prob)
    elif m < population:
        sampling = Sampling("fixed", population, m)
    else:
        sampling = Sampling("full", population, population)
    if p.clip_norm <= 0 and sampling.kind != "poisson":
        return None
    z, calibrated = float(p.noise_multiplier), False
    if p.clip_norm > 0 and p.target_epsilon > 0 and z == 0:
        z = calibrate(sampling, p.target_epsilon, p.delta, config.num_rounds, p.accountant)
        calibrated = True
    budget = p.target_epsilon if p.clip_norm > 0 else 0.0
    return Plan(sampling, z, p.delta, p.accountant, budget, calibrated)
