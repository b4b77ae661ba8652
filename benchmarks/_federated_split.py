"""Non-IID splits of a labelled dataset over devices: Dirichlet label skew, and its statistics.

    parts = dirichlet_split(labels, devices=20, alpha=0.5, seed=0)   # index arrays, one per device
    skew(labels, parts)                                              # how far from IID it is

Each class's examples are dealt to the devices in proportions drawn from Dir(alpha) (Hsu et al.
2019, "Measuring the effects of non-identical data distribution"), the split most federated
benchmarks use; a small alpha gives each device a few dominant classes. Draws are repeated (same
seed stream) until every device holds at least `min_examples`, so no device is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dirichlet_split(
    labels: np.ndarray,
    devices: int,
    alpha: float,
    seed: int,
    *,
    min_examples: int = 10,
    max_draws: int = 1000,
) -> list[np.ndarray]:
    """Indices of `labels` per device (sorted); together they cover every index exactly once.

    Raises:
        ValueError: fewer than 2 devices, alpha not positive, or more examples asked per device
            than the data holds, or no draw met `min_examples` within `max_draws`.
    """
    labels = np.asarray(labels)
    if devices < 2:
        raise ValueError(f"a split needs at least 2 devices, got {devices}")
    if not alpha > 0:
        raise ValueError(f"the Dirichlet alpha must be positive, got {alpha}")
    if devices * min_examples > len(labels):
        raise ValueError(
            f"{devices} devices x {min_examples} examples exceed the {len(labels)} examples"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_draws):
        parts: list[list[int]] = [[] for _ in range(devices)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(devices, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for device, chunk in enumerate(np.split(members, cuts)):
                parts[device].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_examples:
            return [np.array(sorted(p), dtype=np.int64) for p in parts]
    raise ValueError(f"no split gave every device {min_examples} examples in {max_draws} draws")


def skew(labels: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, float | list[int]]:
    """Sizes and label skew of a split.

    `mean_total_variation`: the mean over devices of the total-variation distance between a
    device's label distribution and the whole data's (0 for IID, near 1 for one class each);
    `mean_classes_for_90pct`: how many classes make up 90% of a device's examples, on average.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    overall = np.array([np.mean(labels == c) for c in classes])
    distances, dominant = [], []
    for part in parts:
        own = np.array([np.mean(labels[part] == c) for c in classes])
        distances.append(0.5 * float(np.abs(own - overall).sum()))
        ordered = np.sort(own)[::-1]
        dominant.append(int(np.searchsorted(np.cumsum(ordered), 0.9 - 1e-9) + 1))
    return {
        "sizes": [len(p) for p in parts],
        "mean_total_variation": round(float(np.mean(distances)), 4),
        "mean_classes_for_90pct": round(float(np.mean(dominant)), 2),
    }


__all__ = ["dirichlet_split", "skew"]
