"""A campaign's differential privacy: its parameters and the (epsilon, delta) they give.

Devices clip each update to L2 norm `clip` and add Gaussian noise of standard deviation
`noise_multiplier x clip` (fedota.client.training.privacy). One device's whole round
contribution then moves the sum of updates by at most `clip` and carries at least that noise, so
each round is a Gaussian mechanism with noise multiplier >= sigma at the device level (the other
devices' noise only adds privacy, and is not counted: the figure is an upper bound). Devices
take part with probability q = clients_per_round / eligible devices, the Poisson-sampled
Gaussian of DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models"), composed over the rounds with Google's `dp-accounting` RDP accountant.

The server must aggregate with uniform weights under DP (not by example counts) for the
sensitivity to hold; `noisy_update_norm_bound` gives the norm bound its validation can use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
from dp_accounting.rdp import RdpAccountant


@dataclass(frozen=True)
class DpParams:
    """A campaign's privacy settings.

    Attributes:
        clip: L2 bound of one device's update.
        noise_multiplier: sigma; each device adds N(0, (sigma x clip)^2) per coordinate.
        delta: the delta of the reported (epsilon, delta).

    Raises:
        ValueError: clip or sigma not positive and finite, delta outside (0, 1).
    """

    clip: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("clip", "noise_multiplier"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"DP {name} must be positive and finite, got {value}")
        if not 0 < self.delta < 1:
            raise ValueError(f"DP delta must lie in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class PrivacySpent:
    """The (epsilon, delta) of a campaign after `rounds` rounds at sampling rate `q`."""

    epsilon: float
    delta: float
    rounds: int
    sampling_rate: float
    noise_multiplier: float


def campaign_epsilon(
    params: DpParams, *, rounds: int, clients_per_round: int, eligible_devices: int
) -> PrivacySpent:
    """The campaign's epsilon at `params.delta` (RDP accountant, Poisson sampling).

    Raises:
        ValueError: rounds < 0, clients_per_round < 1 or above eligible_devices.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if not 1 <= clients_per_round <= eligible_devices:
        raise ValueError(
            f"clients per round must lie in 1..{eligible_devices} eligible devices, "
            f"got {clients_per_round}"
        )
    q = clients_per_round / eligible_devices
    if rounds == 0:
        return PrivacySpent(0.0, params.delta, 0, q, params.noise_multiplier)
    accountant = RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(params.noise_multiplier)
    )
    accountant.compose(event, rounds)
    epsilon = accountant.get_epsilon(params.delta)
    return PrivacySpent(float(epsilon), params.delta, rounds, q, params.noise_multiplier)


def noisy_update_norm_bound(params: DpParams, numel: int, *, tail: float = 6.0) -> float:
    """A norm no honest DP update exceeds but with probability below exp(-tail^2 / 2).

    An honest update is the clipped delta (norm <= clip) plus N(0, (sigma clip)^2 I_d) noise,
    whose norm is below sigma clip (sqrt(d) + tail) but with that probability (Gaussian
    concentration of the norm, a 1-Lipschitz function).
    """
    return params.clip * (1.0 + params.noise_multiplier * (math.sqrt(numel) + tail))


__all__ = ["DpParams", "PrivacySpent", "campaign_epsilon", "noisy_update_norm_bound"]
