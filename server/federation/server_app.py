"""fedota's ServerApp (plumbing layer): FedAvg over a tiny vector, to prove the federation works.

Run config: `num-server-rounds`, `min-nodes` (nodes to wait for and train on each round) and
`round-timeout` (seconds). Training with fedota's strategies, validation and reporting replaces
the body of `main` in a later layer; the component name stays.
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

log = logging.getLogger(__name__)

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg for the configured rounds and log the participants and the result."""
    rounds = int(context.run_config.get("num-server-rounds", 1))
    min_nodes = int(context.run_config.get("min-nodes", 1))
    timeout = float(context.run_config.get("round-timeout", 120))
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=min_nodes,
        min_evaluate_nodes=0,
        min_available_nodes=min_nodes,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.zeros(4, dtype=np.float32)]),
        num_rounds=rounds,
        timeout=timeout,
    )
    final = result.arrays.to_numpy_ndarrays()[0] if result.arrays is not None else None
    print(f"fedota: {rounds} round(s) done; final weights {final}", flush=True)
