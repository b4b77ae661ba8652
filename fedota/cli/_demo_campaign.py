"""The demo's training steps: devices collect examples, a federated campaign learns from them,
and its result ships back to the same devices by patch.

Each daemon is given its own skewed share of the digits (as apps on different devices would see
different users) through its local inference API; the examples never leave the device. The
operator starts a campaign with `fedota admin campaigns start`, and releases and rolls out its
final version like any other.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from fedota.cli._demo_models import SEED
from fedota.cli._demo_updates import FAMILY, print_bytes, roll_out, show_answers
from fedota.cli._infer_client import InferClient
from fedota.cli._local_fleet import LocalCoordinator, ProcessFailed, run_admin
from fedota.protos.v1 import inference_pb2 as pb

# How unevenly the classes spread over devices (Dirichlet concentration): lower is more skewed.
SKEW = 0.5
EXAMPLES_PER_DEVICE = 240
ROUNDS = 2
SUBMIT_TIMEOUT = 30.0


def learn_from_the_fleet(
    console: Console, coordinator: LocalCoordinator, states: list[Path], timeout: float
) -> None:
    """Steps 10-12: examples on the devices, a campaign over them, its result shipped back.

    Raises:
        ProcessFailed: as `train_and_ship`.
    """
    console.print("[bold]10.[/] apps on each device submit labelled examples (they stay there)")
    collect_examples(console, states)
    console.print(
        f"[bold]11.[/] a federated campaign: {ROUNDS} rounds of LoRA on each device's own "
        "quantized model, int8 uploads; its result is released and rolled out by patch"
    )
    result = train_and_ship(console, coordinator, f"{FAMILY}@v2", len(states), timeout)
    console.print(f"[bold]12.[/] each device answers from {result}")
    show_answers(console, coordinator, states)


def collect_examples(console: Console, states: list[Path]) -> None:
    """Submit a skewed share of the digits training split to each daemon's example store."""
    from fedota.ml import digits

    data = digits.load_digits_data(seed=SEED)
    shares = _skewed_shares(data.y_train, len(states), np.random.default_rng(SEED))
    for state, rows in zip(states, shares, strict=True):
        with InferClient(f"unix:{state / 'inference.sock'}", SUBMIT_TIMEOUT) as client:
            for row in rows:
                features = pb.FeatureVector(values=[float(v) for v in data.x_train[row]])
                request = pb.SubmitExampleRequest(label=str(data.y_train[row]), features=features)
                client.call("SubmitExample", request)
        classes = np.bincount(data.y_train[rows], minlength=10)
        console.print(f"   {state.name}: {len(rows)} examples, per class {classes.tolist()}")


def train_and_ship(
    console: Console, coordinator: LocalCoordinator, base: str, devices: int, timeout: float
) -> str:
    """Run a campaign on `base` over the devices, then release and roll out its final version;
    returns the version's `family@vN`.

    Raises:
        ProcessFailed: a command failed, the campaign failed, or `timeout` passed.
    """
    started = json.loads(
        run_admin(
            coordinator,
            *("campaigns", "start", "--model", base, "--rounds", str(ROUNDS)),
            *("--clients-per-round", str(devices), "--min-clients", "2"),
            *("--strategy", "fedavg", "--uplink", "int8", "--json"),
        )
    )
    # A campaign is several steps (each round: a training and an evaluation exchange, each a
    # process start on every device): `timeout` per exchange.
    campaign = _wait_for_campaign(coordinator, started["id"], 2 * ROUNDS * timeout)
    console.print(run_admin(coordinator, "campaigns", "show", started["id"]), end="")
    result = str(campaign["final_version"])
    rollout = roll_out(coordinator, result, "100%", timeout)
    print_bytes(console, rollout)
    return result


def _wait_for_campaign(coordinator: LocalCoordinator, campaign_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = json.loads(run_admin(coordinator, "campaigns", "show", campaign_id, "--json"))
        if shown["state"] == "completed":
            return shown
        if shown["state"] in ("failed", "cancelled"):
            raise ProcessFailed(f"the campaign {shown['state']}: {shown.get('reason', '')}")
        time.sleep(1.0)
    raise ProcessFailed(f"the campaign did not complete within {timeout:.0f} s")


def _skewed_shares(labels: np.ndarray, devices: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices for each device: per class, a Dirichlet split, capped per device."""
    shares: list[list[int]] = [[] for _ in range(devices)]
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        cuts = (np.cumsum(rng.dirichlet([SKEW] * devices)) * len(rows)).astype(int)[:-1]
        for device, part in enumerate(np.split(rows, cuts)):
            shares[device].extend(part.tolist())
    return [
        np.asarray(rng.permutation(share)[:EXAMPLES_PER_DEVICE], dtype=np.int64) for share in shares
    ]


__all__ = ["collect_examples", "learn_from_the_fleet", "train_and_ship"]
