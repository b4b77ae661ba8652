"""Local fine-tuning: a train loop over a device's examples that returns the round's update.

    attach_lora(model, LoRAConfig(rank=4))          # or unfreeze_layers(model, ["layers.2"])
    result = finetune(model, examples, DigitsTask(), FinetuneConfig(epochs=2, proximal_mu=0.01))
    result.update         # {name: float32 array}: trained - starting value, trainable tensors only
    result.metrics        # loss, accuracy, examples, steps, peak training memory

Only parameters with requires_grad train (the adapters, or the unfrozen layers). FedProx (Li et
al. 2020) adds mu/2 ||w - w_start||^2 over them, w_start being the round's starting values.

Examples come as a Sequence or as a function returning a fresh iterable per epoch (a device's
example store streams); they pass through a bounded shuffle buffer, never all in memory at once.
Tasks: `DigitsTask` ((64 pixel values 0..16, label) pairs) and `LanguageTask` (texts, for the
byte LM: cut into windows of `seq_len` bytes after BOS, next-byte loss).

Peak training memory is measured from the tensors themselves, each storage counted once: model
weights and buffers, gradients, optimizer state, and the activations autograd saved for the
step's backward (`torch.autograd.graph.saved_tensors_hooks`), summed per step (an upper bound on
what one step holds at once) and maximised over steps. Process RSS would mix in the interpreter,
libraries and allocator caches, and cannot be reset between runs in one process.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedota.ml.lm.config import BOS
from fedota.ml.lora import LayerSelection, LoRAConfig, Trainable

Example = TypeVar("Example")
Examples = Sequence[Example] | Callable[[], Iterable[Example]]
SHUFFLE_BUFFER = 1024


class NoTrainableParameters(ValueError):
    """The model has nothing to train (attach adapters or unfreeze layers first)."""


class NoExamples(ValueError):
    """The device has no examples to train or evaluate on."""


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; the update must not be sent."""


@dataclass(frozen=True)
class FinetuneConfig:
    """A round's local training.

    Attributes:
        epochs: passes over the examples.
        learning_rate: of the local optimizer.
        batch_size: examples (digits) or windows (LM) per step.
        proximal_mu: FedProx coefficient (0: plain FedAvg local training).
        optimizer: "adam" (AdamW, no weight decay) or "sgd".
        max_steps: stop after this many steps (None: run every epoch out).
        seed: shuffling and dropout seed (the same seed, the same update).

    Raises:
        ValueError: a value out of range.
    """

    epochs: int = 1
    learning_rate: float = 1e-2
    batch_size: int = 32
    proximal_mu: float = 0.0
    optimizer: str = "adam"
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not (self.proximal_mu >= 0 and math.isfinite(self.proximal_mu)):
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}")


@dataclass(frozen=True)
class TrainMetrics:
    """What a device reports about its round.

    Attributes:
        loss: mean training loss over the steps (without the proximal term).
        accuracy: fraction of predictions right (digits: labels; LM: next bytes).
        examples: examples seen in one epoch (the FedAvg weight).
        predictions: predictions scored (digits: = examples; LM: bytes).
        steps: optimizer steps taken.
        peak_memory_bytes: tensor bytes held at the heaviest point of training.
    """

    loss: float
    accuracy: float
    examples: int
    predictions: int
    steps: int
    peak_memory_bytes: int


@dataclass(frozen=True)
class EvalMetrics:
    """Loss, accuracy and perplexity (exp of the loss; meaningful for the LM) on examples."""

    loss: float
    accuracy: float
    examples: int
    predictions: int

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))


@dataclass(frozen=True)
class FinetuneResult:
    """The update (trained minus starting values, float32) and the round's metrics."""

    update: dict[str, np.ndarray]
    metrics: TrainMetrics


@dataclass(frozen=True)
class Batch:
    """Model inputs, targets, and how many source examples the batch holds."""

    inputs: torch.Tensor
    targets: torch.Tensor
    examples: int


class Task(Protocol[Example]):
    """How a model's examples become batches and a loss."""

    def batches(self, examples: Iterable[Example], batch_size: int) -> Iterator[Batch]:
        """Batches of the examples, in their order."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, int]:
        """Mean loss over the batch, predictions right, predictions made."""
        ...


class DigitsTask:
    """(pixels, label) pairs: 64 values 0..16 and a class 0..9 (fedota.ml.digits)."""

    def batches(self, examples: Iterable[Any], batch_size: int) -> Iterator[Batch]:
        """Raises: ValueError: an example that is not 64 pixels and an int label."""
        pixels: list[np.ndarray] = []
        labels: list[int] = []
        for features, label in examples:
            row = np.asarray(features, dtype=np.float32).reshape(-1)
            if row.size != 64:
                raise ValueError(f"a digits example has 64 pixels, got {row.size}")
            pixels.append(row)
            labels.append(int(label))
            if len(pixels) == batch_size:
                yield self._batch(pixels, labels)
                pixels, labels = [], []
        if pixels:
            yield self._batch(pixels, labels)

    @staticmethod
    def _batch(pixels: list[np.ndarray], labels: list[int]) -> Batch:
        return Batch(torch.from_numpy(np.stack(pixels)), torch.tensor(labels), len(labels))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, int]:
        logits = model(batch.inputs)
        loss = F.cross_entropy(logits, batch.targets)
        correct = int((logits.argmax(dim=1) == batch.targets).sum())
        return loss, correct, batch.examples


@dataclass(frozen=True)
class LanguageTask:
    """Texts (bytes or str) for the byte LM: each cut into windows of `seq_len` bytes after
    BOS; the loss is next-byte cross-entropy."""

    seq_len: int = 64

    def batches(self, examples: Iterable[Any], batch_size: int) -> Iterator[Batch]:
        windows: list[list[int]] = []
        texts = 0
        for text in examples:
            data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            texts += 1
            for start in range(0, len(data), self.seq_len):
                chunk = data[start : start + self.seq_len]
                if len(chunk) < 2 and start:
                    continue
                windows.append([BOS, *chunk])
                if len(windows) == batch_size:
                    yield self._batch(windows, texts)
                    windows, texts = [], 0
        if windows:
            yield self._batch(windows, texts)

    @staticmethod
    def _batch(windows: list[list[int]], texts: int) -> Batch:
        width = max(len(w) for w in windows)
        tokens = torch.full((len(windows), width), -100, dtype=torch.long)
        for row, window in enumerate(windows):
            tokens[row, : len(window)] = torch.tensor(window)
        inputs = tokens[:, :-1].clamp(min=0)  # padding is masked out of the loss by -100
        return Batch(inputs, tokens[:, 1:], texts)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int, int]:
        logits = model(batch.inputs)
        flat_targets = batch.targets.reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat_targets)
        scored = flat_targets != -100
        right = logits.reshape(-1, logits.shape[-1]).argmax(dim=1) == flat_targets
        return loss, int((right & scored).sum()), int(scored.sum())


RecordValue = int | float | str


@dataclass(frozen=True)
class RoundPlan:
    """What a campaign asks of each device in a round, and its flat record form.

    The record is what travels in the round's Flower ConfigRecord (scalar values under the keys
    below), so the coordinator writes it and every device reads it with this one class.

    Attributes:
        finetune: the local training.
        trainable: LoRA adapters, or layers trained themselves.
        uplink: the uplink compression, as fedota.delta.uplink.UplinkSpec.parse reads it.
        dp_clip: client-side DP clip bound (None: no DP).
        dp_noise: client-side DP noise multiplier.
    """

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trainable: Trainable = field(default_factory=LoRAConfig)
    uplink: str = "none"
    dp_clip: float | None = None
    dp_noise: float = 0.0

    def __post_init__(self) -> None:
        if self.dp_clip is not None and not (self.dp_clip > 0 and math.isfinite(self.dp_clip)):
            raise ValueError(f"dp-clip must be positive, got {self.dp_clip}")
        if not (self.dp_noise >= 0 and math.isfinite(self.dp_noise)):
            raise ValueError(f"dp-noise must be >= 0, got {self.dp_noise}")
        if self.dp_noise and self.dp_clip is None:
            raise ValueError("dp-noise needs dp-clip (noise is scaled by the clip bound)")

    def to_record(self) -> dict[str, RecordValue]:
        """The plan as flat scalars (Flower ConfigRecord values)."""
        f = self.finetune
        record: dict[str, RecordValue] = {
            "local-epochs": f.epochs,
            "learning-rate": f.learning_rate,
            "batch-size": f.batch_size,
            "proximal-mu": f.proximal_mu,
            "optimizer": f.optimizer,
            "max-steps": f.max_steps or 0,
            "seed": f.seed,
            "uplink": self.uplink,
            "dp-clip": self.dp_clip or 0.0,
            "dp-noise": self.dp_noise,
        }
        if isinstance(self.trainable, LoRAConfig):
            record |= {
                "trainable": "lora",
                "lora-rank": self.trainable.rank,
                "lora-alpha": self.trainable.alpha,
                "lora-targets": ",".join(self.trainable.targets),
                "lora-seed": self.trainable.seed,
            }
        else:
            record |= {"trainable": "layers", "trainable-layers": ",".join(self.trainable.patterns)}
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RoundPlan:
        """Read a plan back from `to_record`'s form (unknown keys are ignored).

        Raises:
            ValueError: a key is missing or holds a value of the wrong type or range; the
                message names the key.
        """
        get = _RecordReader(record)
        finetune = FinetuneConfig(
            epochs=get.int("local-epochs"),
            learning_rate=get.float("learning-rate"),
            batch_size=get.int("batch-size"),
            proximal_mu=get.float("proximal-mu"),
            optimizer=get.str("optimizer"),
            max_steps=get.int("max-steps") or None,
            seed=get.int("seed"),
        )
        kind = get.str("trainable")
        trainable: Trainable
        if kind == "lora":
            trainable = LoRAConfig(
                rank=get.int("lora-rank"),
                alpha=get.float("lora-alpha"),
                targets=tuple(get.str("lora-targets").split(",")),
                seed=get.int("lora-seed"),
            )
        elif kind == "layers":
            trainable = LayerSelection(tuple(get.str("trainable-layers").split(",")))
        else:
            raise ValueError(f"trainable must be lora or layers, got {kind!r}")
        clip = get.float("dp-clip")
        return cls(finetune, trainable, get.str("uplink"), clip or None, get.float("dp-noise"))


class _RecordReader:
    def __init__(self, record: Mapping[str, Any]) -> None:
        self._record = record

    def _value(self, key: str, types: tuple[type, ...]) -> Any:
        if key not in self._record:
            raise ValueError(f"round config lacks {key!r}")
        value = self._record[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"round config {key!r} has {type(value).__name__} {value!r}")
        return value

    def int(self, key: str) -> int:
        return int(self._value(key, (int,)))

    def float(self, key: str) -> float:
        return float(self._value(key, (int, float)))

    def str(self, key: str) -> str:
        return str(self._value(key, (str,)))


def finetune(
    model: nn.Module, examples: Examples[Any], task: Task[Any], config: FinetuneConfig
) -> FinetuneResult:
    """Train the model's trainable parameters in place and return their change and metrics.

    Raises:
        NoTrainableParameters: no parameter has requires_grad.
        NoExamples: the examples are empty.
        TrainingDiverged: the loss became NaN or infinite.
        ValueError: an example the task cannot read.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise NoTrainableParameters("nothing to train: attach LoRA adapters or unfreeze layers")
    start = {name: p.detach().clone() for name, p in params.items()}
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adam":
        optimizer = torch.optim.AdamW(params.values(), lr=config.learning_rate, weight_decay=0.0)
    else:
        optimizer = torch.optim.SGD(params.values(), lr=config.learning_rate)
    meter = _MemoryMeter(model, optimizer)
    total_loss, right, scored, steps, epoch_examples = 0.0, 0, 0, 0, 0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for epoch in range(config.epochs):
            seen = 0
            stream = _shuffled(_iterate(examples), config.seed + epoch)
            for batch in task.batches(stream, config.batch_size):
                with meter.saving():
                    loss, correct, count = task.loss(model, batch)
                    objective = loss + _proximal(params, start, config.proximal_mu)
                if not torch.isfinite(objective):
                    raise TrainingDiverged(f"the training loss became {float(objective.detach())}")
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                meter.after_backward()
                optimizer.step()
                total_loss += float(loss.detach())
                right, scored, steps = right + correct, scored + count, steps + 1
                seen += batch.examples
                if config.max_steps is not None and steps >= config.max_steps:
                    break
            epoch_examples = max(epoch_examples, seen)
            if config.max_steps is not None and steps >= config.max_steps:
                break
    model.eval()
    if steps == 0:
        raise NoExamples("no examples to train on")
    update = {
        name: (p.detach() - start[name]).to(torch.float32).numpy().copy()
        for name, p in params.items()
    }
    metrics = TrainMetrics(
        loss=total_loss / steps,
        accuracy=right / max(scored, 1),
        examples=epoch_examples,
        predictions=scored,
        steps=steps,
        peak_memory_bytes=meter.peak,
    )
    return FinetuneResult(update, metrics)


def evaluate(
    model: nn.Module, examples: Examples[Any], task: Task[Any], *, batch_size: int = 64
) -> EvalMetrics:
    """Mean loss and accuracy of the model on the examples (no training).

    Raises:
        NoExamples: the examples are empty.
    """
    total, right, scored, seen = 0.0, 0, 0, 0
    model.eval()
    with torch.inference_mode():
        for batch in task.batches(_iterate(examples), batch_size):
            loss, correct, count = task.loss(model, batch)
            total += float(loss) * count
            right, scored, seen = right + correct, scored + count, seen + batch.examples
    if scored == 0:
        raise NoExamples("no examples to evaluate on")
    return EvalMetrics(total / scored, right / scored, seen, scored)


def _iterate(examples: Examples[Any]) -> Iterable[Any]:
    return examples() if callable(examples) else examples


def _shuffled(items: Iterable[Any], seed: int, size: int = SHUFFLE_BUFFER) -> Iterator[Any]:
    """A bounded shuffle buffer (as tf.data's): memory of `size` items, not of the stream."""
    rng = random.Random(seed)
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def _proximal(
    params: dict[str, nn.Parameter], start: dict[str, torch.Tensor], mu: float
) -> torch.Tensor | float:
    if mu == 0:
        return 0.0
    return 0.5 * mu * sum(((p - start[n]) ** 2).sum() for n, p in params.items())


class _MemoryMeter:
    """Peak tensor bytes of a training loop: state, gradients, optimizer state, saved tensors."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._model, self._optimizer = model, optimizer
        self._state = {
            _key(t): _nbytes(t) for t in [*model.parameters(), *model.buffers()] if t is not None
        }
        self._saved: dict[int, int] = {}
        self.peak = sum(self._state.values())

    def saving(self) -> torch.autograd.graph.saved_tensors_hooks:
        self._saved = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            key = _key(tensor)
            if key not in self._state:
                self._saved[key] = _nbytes(tensor)
            return tensor

        return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)

    def after_backward(self) -> None:
        grads = sum(_nbytes(p.grad) for p in self._model.parameters() if p.grad is not None)
        moments = sum(
            _nbytes(value)
            for state in self._optimizer.state.values()
            for value in state.values()
            if isinstance(value, torch.Tensor)
        )
        # Adam's moments appear at its first step: count them as the next steps will hold them.
        if not moments and isinstance(self._optimizer, torch.optim.Adam | torch.optim.AdamW):
            moments = 2 * sum(
                _nbytes(p) for group in self._optimizer.param_groups for p in group["params"]
            )
        held = sum(self._state.values()) + grads + moments + sum(self._saved.values())
        self.peak = max(self.peak, held)


def _key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().nbytes()


__all__ = [
    "Batch",
    "DigitsTask",
    "EvalMetrics",
    "FinetuneConfig",
    "FinetuneResult",
    "LanguageTask",
    "NoExamples",
    "NoTrainableParameters",
    "RoundPlan",
    "Task",
    "TrainMetrics",
    "TrainingDiverged",
    "evaluate",
    "finetune",
]
