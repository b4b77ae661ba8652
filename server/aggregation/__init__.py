"""fedota.server.aggregation: validating and combining devices' updates, free of any transport.

    settings = TrainingSettings(strategy="krum", krum_byzantine=1, uplink="topk:0.01")
    round_ = Round(settings.build_strategy(), global_arrays, settings.update_limits(spec),
                   weight_by_examples=settings.weight_by_examples)
    round_.offer("device-3", payload, examples=120)   # Verdict: accepted, or reason + detail
    outcome = round_.finish(state)                    # next arrays, strategy state, records

Strategies are pure objects (`FedAvg`, `FedProx`, `FedAdam`, `TrimmedMean`, `Krum`); FedAvg and
FedAdam stream (memory independent of the number of updates), the robust ones hold a round's
updates up to a cap. `campaign_epsilon` gives a campaign's (epsilon, delta). `records` adapts
Flower's Message API records.
"""

from fedota.server.aggregation.base import (
    AggregationError,
    NotEnoughUpdates,
    RoundAccumulator,
    Strategy,
)
from fedota.server.aggregation.config import STRATEGIES, TrainingSettings
from fedota.server.aggregation.fedadam import FedAdam
from fedota.server.aggregation.fedavg import FedAvg, FedProx, WeightedSum
from fedota.server.aggregation.privacy import (
    DpParams,
    PrivacySpent,
    campaign_epsilon,
    noisy_update_norm_bound,
)
from fedota.server.aggregation.robust import Krum, TrimmedMean, krum_select, trimmed_mean
from fedota.server.aggregation.round import Accepted, Rejected, Round, RoundOutcome
from fedota.server.aggregation.validation import (
    ModelSpec,
    RejectReason,
    TensorSpec,
    UpdateLimits,
    Verdict,
    validate_update,
)

__all__ = [
    "STRATEGIES",
    "Accepted",
    "AggregationError",
    "DpParams",
    "FedAdam",
    "FedAvg",
    "FedProx",
    "Krum",
    "ModelSpec",
    "NotEnoughUpdates",
    "PrivacySpent",
    "RejectReason",
    "Rejected",
    "Round",
    "RoundAccumulator",
    "RoundOutcome",
    "Strategy",
    "TensorSpec",
    "TrainingSettings",
    "TrimmedMean",
    "UpdateLimits",
    "Verdict",
    "WeightedSum",
    "campaign_epsilon",
    "krum_select",
    "noisy_update_norm_bound",
    "trimmed_mean",
    "validate_update",
]
