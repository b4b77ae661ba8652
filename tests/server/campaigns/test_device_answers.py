"""The ClientApp's answers on a device that cannot train: a typed refusal naming the problem
(sent back as an error reply), never a crash; and its federation-check status."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from campaign_world import add_examples, base_model, install_model, prepare_device, shard
from flwr.app import ConfigRecord, RecordDict

from fedota.client.federation.client_app import (
    BadRequest,
    NoData,
    NoModel,
    local_evaluate,
    local_status,
    local_train,
)
from fedota.ml.lora import LoRAConfig, make_trainable, trainable_state
from fedota.server.aggregation import TrainingSettings
from fedota.server.aggregation.records import arrays_to_record
from fedota.server.campaigns.run import CAMPAIGN_ID_KEY, ROUND_KEY


def _content(arrays: dict[str, np.ndarray] | None = None, **config: object) -> RecordDict:
    if arrays is None:
        model = copy.deepcopy(base_model())
        make_trainable(model, LoRAConfig(rank=4))
        arrays = {k: v.numpy() for k, v in trainable_state(model).items()}
    plan = TrainingSettings(trainable=LoRAConfig(rank=4)).round_plan().to_record()
    record = ConfigRecord({**plan, CAMPAIGN_ID_KEY: "cmp_1", ROUND_KEY: 1, **config})
    return RecordDict({"arrays": arrays_to_record(arrays), "config": record})


def test_a_device_without_a_model_refuses(tmp_path: Path) -> None:
    add_examples(tmp_path, shard(0)[:10])
    with pytest.raises(NoModel, match="runs no model yet"):
        local_train(tmp_path, _content())
    status = local_status(tmp_path, RecordDict())
    assert status.config_records["status"]["problem"] == "the device runs no model yet"
    assert status.metric_records["metrics"]["examples"] == 10


def test_a_device_without_examples_refuses(tmp_path: Path) -> None:
    install_model(tmp_path)
    with pytest.raises(NoData, match="no example store"):
        local_train(tmp_path, _content())
    add_examples(tmp_path, [])
    with pytest.raises(NoData, match="no usable local examples"):
        local_train(tmp_path, _content())
    status = local_status(tmp_path, RecordDict())
    assert status.config_records["status"]["model"] == "digits@v1 int8"


def test_a_damaged_model_file_is_a_refusal(tmp_path: Path) -> None:
    prepare_device(tmp_path, 0)
    model = next(tmp_path.glob("models/*/model.safetensors"))
    model.write_bytes(b"not a checkpoint")
    with pytest.raises(NoModel, match="cannot be loaded"):
        local_train(tmp_path, _content())


def test_malformed_messages_are_refused(tmp_path: Path) -> None:
    prepare_device(tmp_path, 0)
    with pytest.raises(BadRequest, match="no 'config' record"):
        local_train(tmp_path, RecordDict())
    with pytest.raises(BadRequest, match="round plan"):
        local_train(tmp_path, _content(**{"batch-size": "big"}))
    with pytest.raises(BadRequest, match="do not fit"):
        local_evaluate(tmp_path, _content({"w": np.zeros(3, np.float32)}))


def test_a_ready_device_trains_and_evaluates(tmp_path: Path) -> None:
    prepare_device(tmp_path, 0)
    reply = local_train(tmp_path, _content())
    metrics = reply.metric_records["metrics"]
    assert metrics["num-examples"] == 160 and metrics["peak-memory-bytes"] > 0
    assert (tmp_path / "training" / "uplink-residual.npz").exists()
    scores = local_evaluate(tmp_path, _content()).metric_records["metrics"]
    assert scores["num-examples"] == 40 and 0 <= scores["eval-accuracy"] <= 1
