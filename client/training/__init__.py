"""fedota.client.training: the device's side of a federated round, free of any transport.

`run_round` trains the active model's adapters (or chosen layers) on local examples, applies
client-side DP (`privacy`) and compresses the update with error feedback (`uplink`), whose
residual `ResidualStore` keeps between rounds. Flower's ClientApp calls these.
"""

from fedota.client.training.privacy import ClientDp, clip_update, global_norm, privatize
from fedota.client.training.round import RoundResult, run_round
from fedota.client.training.uplink import CompressedUpdate, ResidualStore, compress_with_feedback

__all__ = [
    "ClientDp",
    "CompressedUpdate",
    "ResidualStore",
    "RoundResult",
    "clip_update",
    "compress_with_feedback",
    "global_norm",
    "privatize",
    "run_round",
]
