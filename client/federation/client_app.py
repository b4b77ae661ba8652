"""fedota's ClientApp: a device's part in a training campaign, on what the device runs.

The SuperNode passes the daemon's state directory (`--node-config state-dir=...`). A train
message carries the round plan (`fedota.ml.finetune.RoundPlan` record, plus the campaign id,
round and the model the campaign trains) and the global trainable arrays; the device loads the
model of its active slot as shipped (int8/int4 weights stay quantized and frozen), attaches
the plan's adapters (or unfreezes its layers), trains on its own examples from the daemon's
example store (`examples.db`), and replies with the compressed, privatized update and its
metrics (`fedota.client.training`); the uplink residual stays in `STATE/training/`. An evaluate
message scores the given arrays on the device's held-out examples (every fifth stored one).

A device that cannot take part answers with an error reply, never a crash: no model in its
slots, another model than the campaign's, no usable examples, a malformed message, or
training that diverged. Every task is also noted in `STATE/flower-tasks.log`. In a campaign with
secure aggregation the train messages are SecAgg+'s steps, run by Flower's `secaggplus_mod`
around `local_secure_train` (`fedota.client.federation.secure`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from torch import nn

from fedota.client.data import STORE_FILE, Desensitizer, ExampleStore, StoredExample, StoreError
from fedota.client.federation import secure
from fedota.client.training import ResidualStore, run_round
from fedota.client.training.records import global_arrays, reply_content
from fedota.client.training.round import RoundResult
from fedota.client.update import SlotError, SlotStore
from fedota.delta.uplink import UplinkFormatError, decode
from fedota.ml import digits
from fedota.ml.architectures import InvalidArchitectureConfig, UnknownArchitecture, build_model
from fedota.ml.checkpoint import CheckpointError, load_checkpoint
from fedota.ml.finetune import (
    DigitsTask,
    LanguageTask,
    NoExamples,
    NoTrainableParameters,
    RoundPlan,
    Task,
    TrainingDiverged,
    evaluate,
)
from fedota.ml.lora import load_trainable_state, make_trainable
from fedota.ml.quant import load_quantized_state

TASK_LOG = "flower-tasks.log"
STATE_DIR_KEY = "state-dir"
TRAINING_DIR = "training"
# The daemon's example store (as `fedota device serve` keeps it) and its limits.
EXAMPLES_MAX_BYTES = 64 << 20
EXAMPLES_MAX_AGE = dt.timedelta(days=30)
HOLDOUT_EVERY = 5
# Keys the coordinator adds to the round plan's record.
CAMPAIGN_KEY = "campaign-id"
FAMILY_KEY = "model-family"
VERSION_KEY = "model-version"
CONFIG_RECORD = "config"
ARRAYS_RECORD = "arrays"


class DeviceNotReady(Exception):
    """The device cannot take part in this round; `code` goes in the error reply."""

    code = 4000


class NoModel(DeviceNotReady):
    code = 4001


class OtherModel(DeviceNotReady):
    code = 4002


class NoData(DeviceNotReady):
    code = 4003


class BadRequest(DeviceNotReady):
    code = 4004


class TrainingFailed(DeviceNotReady):
    code = 4005


@dataclass(frozen=True)
class LocalModel:
    """The active slot's model as loaded for training."""

    module: nn.Module
    architecture: str


app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    """Train on the device's data; reply with the compressed update and metrics (or, in a
    secure round, take this step of SecAgg+ through Flower's `secaggplus_mod`)."""
    if secure.is_secure(message):
        return _answer_secure(message, context)
    return _answer(message, context, local_train)


@app.evaluate()
def evaluate_round(message: Message, context: Context) -> Message:
    """Score the given arrays on the device's held-out examples."""
    return _answer(message, context, local_evaluate)


@app.query()
def query(message: Message, context: Context) -> Message:
    """Say whether this device could train: its model and how many examples it holds."""
    return _answer(message, context, local_status)


def local_status(state_dir: Path, _content: RecordDict) -> RecordDict:
    """A federation check's answer: `model` (family@vN variant, or empty), `problem` (why the
    device could not train, or empty) and `examples` (how many stored examples it holds)."""
    model, problem, examples = "", "", 0
    try:
        slot = SlotStore(state_dir).active()
        if slot is None:
            problem = "the device runs no model yet"
        else:
            t = slot.target
            model = f"{t.family}@v{t.version} {t.variant}"
    except SlotError as exc:
        problem = f"the device's model slots are unusable: {exc}"
    path = state_dir / STORE_FILE
    if path.exists():
        try:
            with ExampleStore(
                path,
                max_bytes=EXAMPLES_MAX_BYTES,
                max_age=EXAMPLES_MAX_AGE,
                desensitizer=Desensitizer([]),
            ) as store:
                examples = store.stats().count
        except (StoreError, OSError) as exc:
            problem = problem or f"the example store cannot be read: {exc}"
    problem = problem or ("" if examples else "the device holds no examples")
    return RecordDict(
        {
            "status": ConfigRecord({"model": model, "problem": problem}),
            "metrics": MetricRecord({"examples": examples}),
        }
    )


def local_train(state_dir: Path, content: RecordDict) -> RecordDict:
    """One round's training on this device (no Flower transport).

    Raises:
        DeviceNotReady (a subclass saying which): the device cannot train this round.
    """
    plan, config = _plan(content)
    campaign = str(config.get(CAMPAIGN_KEY, ""))
    if not campaign:
        raise BadRequest(f"the round config lacks {CAMPAIGN_KEY!r}")
    residuals = ResidualStore(_training_dir(state_dir))
    result = _train_round(state_dir, content, plan, lambda start: residuals.load(campaign, start))
    residuals.save(campaign, result.residual)
    return reply_content(result)


def local_secure_train(state_dir: Path, content: RecordDict) -> RecordDict:
    """A secure round's training (SecAgg+'s masked-vector stage calls it): the update clipped
    to the campaign's bound, uncompressed and without error feedback, as a FitRes content.

    Raises:
        DeviceNotReady (a subclass saying which): the device cannot train this round.
    """
    try:
        plain, bound, cap = secure.round_content(content)
    except secure.SecureRequestError as exc:
        raise BadRequest(str(exc)) from None
    plan, config = _plan(plain)
    if not str(config.get(CAMPAIGN_KEY, "")):
        raise BadRequest(f"the round config lacks {CAMPAIGN_KEY!r}")
    # SecAgg+ quantizes and masks the update itself: nothing to compress, no residual.
    plan = dataclasses.replace(plan, uplink="none")
    start = _arrays(plain)
    result = _train_round(state_dir, plain, plan, lambda _start: None)
    try:
        update = decode(result.payload, {name: a.shape for name, a in start.items()})
        return secure.fitres_content(update, list(start), bound, cap, result.metrics)
    except (UplinkFormatError, ValueError) as exc:
        raise TrainingFailed(f"the update cannot be secured: {exc}") from None


def _train_round(
    state_dir: Path,
    content: RecordDict,
    plan: RoundPlan,
    residual: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> RoundResult:
    _, config = _plan(content)
    model = _prepared_model(state_dir, config, plan)
    start = _arrays(content)
    task = _task(model.architecture)
    with _examples(state_dir, model.architecture) as examples:
        try:
            return run_round(
                model.module, start, examples.train, task, plan, residual=residual(start)
            )
        except NoExamples as exc:
            raise NoData(f"no usable local examples to train on ({exc})") from None
        except TrainingDiverged as exc:
            raise TrainingFailed(f"local training diverged: {exc}") from None
        except ValueError as exc:
            raise BadRequest(f"the round does not fit this device's model: {exc}") from None


def local_evaluate(state_dir: Path, content: RecordDict) -> RecordDict:
    """Loss and accuracy of the given arrays on this device's held-out examples.

    Raises:
        DeviceNotReady (a subclass saying which).
    """
    plan, config = _plan(content)
    model = _prepared_model(state_dir, config, plan)
    try:
        load_trainable_state(model.module, _arrays(content))
    except ValueError as exc:
        raise BadRequest(f"the arrays do not fit this device's model: {exc}") from None
    with _examples(state_dir, model.architecture) as examples:
        try:
            scores = evaluate(model.module, examples.held_out, _task(model.architecture))
        except NoExamples:
            raise NoData("no usable local examples to evaluate on") from None
    metrics = MetricRecord(
        {
            "num-examples": scores.examples,
            "eval-loss": scores.loss,
            "eval-accuracy": scores.accuracy,
        }
    )
    return RecordDict({"metrics": metrics})


def load_active_model(state_dir: Path) -> LocalModel:
    """The model of the daemon's active slot, weights at the precision they were shipped in.

    Raises:
        NoModel: no active slot, or its model file cannot be loaded.
    """
    try:
        slot = SlotStore(state_dir).active()
    except SlotError as exc:
        raise NoModel(f"the device's model slots are unusable: {exc}") from None
    if slot is None:
        raise NoModel("the device runs no model yet")
    try:
        checkpoint = load_checkpoint(slot.model_path)
        template = build_model(checkpoint.architecture, checkpoint.config)
        if checkpoint.variant == "fp32":
            template.load_state_dict(checkpoint.tensors, strict=True)
            module = template.eval()
        elif checkpoint.variant in ("int8", "int4"):
            module = load_quantized_state(template, checkpoint.tensors)
        else:
            raise NoModel(f"the active model is {checkpoint.variant}, which cannot train here")
    except (CheckpointError, UnknownArchitecture, InvalidArchitectureConfig) as exc:
        raise NoModel(f"the active model cannot be loaded: {exc}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise NoModel(f"the active model cannot be loaded: {exc}") from None
    return LocalModel(module, checkpoint.architecture)


def _answer(
    message: Message, context: Context, work: Callable[[Path, RecordDict], RecordDict]
) -> Message:
    _note_task(context, message)
    state_dir = context.node_config.get(STATE_DIR_KEY)
    if not isinstance(state_dir, str) or not state_dir:
        return _error(message, BadRequest(f"the SuperNode was started without {STATE_DIR_KEY}"))
    try:
        content = work(Path(state_dir), message.content)
    except DeviceNotReady as exc:
        return _error(message, exc)
    return Message(content=content, reply_to=message)


def _answer_secure(message: Message, context: Context) -> Message:
    _note_task(context, message)
    state_dir = context.node_config.get(STATE_DIR_KEY)
    if not isinstance(state_dir, str) or not state_dir:
        return _error(message, BadRequest(f"the SuperNode was started without {STATE_DIR_KEY}"))

    def masked_stage(inner: Message, _context: Context) -> Message:
        return Message(content=local_secure_train(Path(state_dir), inner.content), reply_to=inner)

    try:
        return secaggplus_mod(message, context, masked_stage)
    except DeviceNotReady as exc:
        return _error(message, exc)
    except (KeyError, TypeError, ValueError) as exc:  # SecAgg+'s own checks of a stage
        return _error(message, BadRequest(f"secure aggregation: {exc}"))


def _error(message: Message, exc: DeviceNotReady) -> Message:
    return Message(error=Error(code=exc.code, reason=str(exc)), reply_to=message)


def _plan(content: RecordDict) -> tuple[RoundPlan, Any]:
    config = content.config_records.get(CONFIG_RECORD)
    if config is None:
        raise BadRequest(f"the message has no {CONFIG_RECORD!r} record")
    try:
        return RoundPlan.from_record(config), config
    except ValueError as exc:
        raise BadRequest(f"unreadable round plan: {exc}") from None


def _arrays(content: RecordDict) -> dict[str, Any]:
    record = content.array_records.get(ARRAYS_RECORD)
    if not isinstance(record, ArrayRecord):
        raise BadRequest(f"the message has no {ARRAYS_RECORD!r} record")
    return global_arrays(record)


def _prepared_model(state_dir: Path, config: Any, plan: RoundPlan) -> LocalModel:
    _check_model(state_dir, config)
    model = load_active_model(state_dir)
    try:
        make_trainable(model.module, plan.trainable)
    except (ValueError, NoTrainableParameters) as exc:
        raise BadRequest(f"the plan's trainable tensors do not fit the model: {exc}") from None
    return model


def _check_model(state_dir: Path, config: Any) -> None:
    """The campaign's adapters are relative to its base version: refuse another model."""
    family, version = config.get(FAMILY_KEY), config.get(VERSION_KEY)
    if family is None or version is None:
        return
    try:
        slot = SlotStore(state_dir).active()
    except SlotError as exc:
        raise NoModel(f"the device's model slots are unusable: {exc}") from None
    if slot is None:
        raise NoModel("the device runs no model yet")
    runs = f"{slot.target.family}@v{slot.target.version}"
    if (slot.target.family, slot.target.version) != (family, version):
        raise OtherModel(f"this device runs {runs}; the campaign trains {family}@v{version}")


def _task(architecture: str) -> Task[Any]:
    return DigitsTask() if architecture == digits.ARCHITECTURE else LanguageTask()


@dataclass(frozen=True)
class _LocalExamples:
    train: Callable[[], Iterable[Any]]
    held_out: Callable[[], Iterable[Any]]


@contextmanager
def _examples(state_dir: Path, architecture: str) -> Iterator[_LocalExamples]:
    path = state_dir / STORE_FILE
    if not path.exists():
        raise NoData(f"the device has no example store ({STORE_FILE})")
    try:
        store = ExampleStore(
            path,
            max_bytes=EXAMPLES_MAX_BYTES,
            max_age=EXAMPLES_MAX_AGE,
            desensitizer=Desensitizer([]),
        )
    except (StoreError, OSError) as exc:
        raise NoData(f"the example store cannot be opened: {exc}") from None
    is_digits = architecture == digits.ARCHITECTURE
    convert = _digit if is_digits else _text
    kind = "features" if is_digits else "text"

    def part(held_out: bool) -> Callable[[], Iterable[Any]]:
        def stream() -> Iterator[Any]:
            for example in store.examples(kind=kind):
                if (example.id % HOLDOUT_EVERY == 0) is held_out:
                    value = convert(example)
                    if value is not None:
                        yield value

        return stream

    try:
        yield _LocalExamples(part(False), part(True))
    except StoreError as exc:
        raise NoData(f"the example store failed: {exc}") from None
    finally:
        store.close()


def _digit(example: StoredExample) -> tuple[tuple[float, ...], int] | None:
    """A (pixels, label) pair, or None for an example that is not a digit."""
    features = example.features
    if features is None or len(features) != digits.N_FEATURES:
        return None
    try:
        label = int(example.label)
    except ValueError:
        return None
    return (features, label) if 0 <= label < digits.N_CLASSES else None


def _text(example: StoredExample) -> str | None:
    return example.text or None


def _training_dir(state_dir: Path) -> Path:
    directory = state_dir / TRAINING_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


def _note_task(context: Context, message: Message) -> None:
    state_dir = context.node_config.get(STATE_DIR_KEY)
    if not isinstance(state_dir, str) or not state_dir:
        return
    line = f"{time.time():.3f} run={message.metadata.run_id} {message.metadata.message_type}\n"
    try:
        with open(Path(state_dir) / TASK_LOG, "a", encoding="utf-8") as handle:
            handle.write(line)
    except OSError:
        pass  # the task log is informative only


__all__ = [
    "BadRequest",
    "DeviceNotReady",
    "LocalModel",
    "NoData",
    "NoModel",
    "OtherModel",
    "TrainingFailed",
    "app",
    "load_active_model",
    "local_evaluate",
    "local_secure_train",
    "local_status",
    "local_train",
]
