"""The two model versions the demo ships: a digits classifier and a short fine-tune of it.

Both train in a second on scikit-learn's bundled digits (nothing is downloaded). Version 2 starts
from version 1's weights and retrains only the output layer, as a partial fine-tune campaign
would, so the patch between them is what such an update costs rather than the size of a model
trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fedota.ml import digits
from fedota.ml.checkpoint import save_checkpoint

SEED = 0
BASE_EPOCHS = 4
FINE_TUNE_EPOCHS = 2
FINE_TUNE_LEARNING_RATE = 1e-2


@dataclass(frozen=True)
class DemoModels:
    """Checkpoint paths of versions 1 and 2, and their accuracy on the held-out digits."""

    base: Path
    fine_tuned: Path
    base_accuracy: float
    fine_tuned_accuracy: float


def write_demo_models(directory: Path) -> DemoModels:
    """Train both versions and save them as fedota checkpoints in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    model, data = digits.train_digits(seed=SEED, epochs=BASE_EPOCHS)
    base_accuracy = digits.accuracy(model, data.x_test, data.y_test)
    base = _save(directory / "digits-v1.safetensors", model)
    _fine_tune(model, data)
    fine_tuned_accuracy = digits.accuracy(model, data.x_test, data.y_test)
    fine_tuned = _save(directory / "digits-v2.safetensors", model)
    return DemoModels(base, fine_tuned, base_accuracy, fine_tuned_accuracy)


def _fine_tune(model: digits.DigitsMLP, data: digits.DigitsData) -> None:
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    head = model.layers[-1]
    optimiser = torch.optim.AdamW(head.parameters(), lr=FINE_TUNE_LEARNING_RATE)
    order = torch.Generator().manual_seed(SEED + 1)
    model.train()
    for _ in range(FINE_TUNE_EPOCHS):
        for batch in torch.randperm(len(x), generator=order).split(32):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()


def _save(path: Path, model: digits.DigitsMLP) -> Path:
    save_checkpoint(
        path,
        model.state_dict(),
        architecture=digits.ARCHITECTURE,
        config=digits.config_of(model),
        variant="fp32",
    )
    return path
