import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CampaignSettings(_message.Message):
    __slots__ = ("rounds", "clients_per_round", "min_clients", "strategy", "cohort", "local_epochs", "dp_clip", "dp_noise", "secure_aggregation", "uplink", "evaluate", "round_timeout_seconds", "node_wait_seconds", "trainable", "max_update_norm")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_PER_ROUND_FIELD_NUMBER: _ClassVar[int]
    MIN_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    DP_CLIP_FIELD_NUMBER: _ClassVar[int]
    DP_NOISE_FIELD_NUMBER: _ClassVar[int]
    SECURE_AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    UPLINK_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NODE_WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_FIELD_NUMBER: _ClassVar[int]
    MAX_UPDATE_NORM_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    clients_per_round: int
    min_clients: int
    strategy: str
    cohort: str
    local_epochs: int
    dp_clip: float
    dp_noise: float
    secure_aggregation: bool
    uplink: str
    evaluate: str
    round_timeout_seconds: float
    node_wait_seconds: float
    trainable: str
    max_update_norm: float
    def __init__(self, rounds: _Optional[int] = ..., clients_per_round: _Optional[int] = ..., min_clients: _Optional[int] = ..., strategy: _Optional[str] = ..., cohort: _Optional[str] = ..., local_epochs: _Optional[int] = ..., dp_clip: _Optional[float] = ..., dp_noise: _Optional[float] = ..., secure_aggregation: _Optional[bool] = ..., uplink: _Optional[str] = ..., evaluate: _Optional[str] = ..., round_timeout_seconds: _Optional[float] = ..., node_wait_seconds: _Optional[float] = ..., trainable: _Optional[str] = ..., max_update_norm: _Optional[float] = ...) -> None: ...

class StartCampaignRequest(_message.Message):
    __slots__ = ("model", "settings", "name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    settings: CampaignSettings
    name: str
    def __init__(self, model: _Optional[str] = ..., settings: _Optional[_Union[CampaignSettings, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ...) -> None: ...

class CampaignRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RoundRefusal(_message.Message):
    __slots__ = ("device_id", "reason")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    reason: str
    def __init__(self, device_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CampaignRound(_message.Message):
    __slots__ = ("number", "state", "selected", "accepted", "rejected", "dropped", "uplink_bytes", "eval_loss", "eval_accuracy", "train_loss", "train_accuracy", "version", "peak_memory_bytes")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    UPLINK_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    number: int
    state: str
    selected: int
    accepted: int
    rejected: _containers.RepeatedCompositeFieldContainer[RoundRefusal]
    dropped: _containers.RepeatedCompositeFieldContainer[RoundRefusal]
    uplink_bytes: int
    eval_loss: float
    eval_accuracy: float
    train_loss: float
    train_accuracy: float
    version: str
    peak_memory_bytes: int
    def __init__(self, number: _Optional[int] = ..., state: _Optional[str] = ..., selected: _Optional[int] = ..., accepted: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RoundRefusal, _Mapping]]] = ..., dropped: _Optional[_Iterable[_Union[RoundRefusal, _Mapping]]] = ..., uplink_bytes: _Optional[int] = ..., eval_loss: _Optional[float] = ..., eval_accuracy: _Optional[float] = ..., train_loss: _Optional[float] = ..., train_accuracy: _Optional[float] = ..., version: _Optional[str] = ..., peak_memory_bytes: _Optional[int] = ...) -> None: ...

class CampaignPrivacy(_message.Message):
    __slots__ = ("clip", "noise_multiplier", "epsilon", "delta")
    CLIP_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    clip: float
    noise_multiplier: float
    epsilon: float
    delta: float
    def __init__(self, clip: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("id", "name", "model", "state", "reason", "rounds_done", "rounds_total", "settings", "final_version", "privacy", "flower_run_id", "created_at", "started_at", "finished_at", "rounds")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    FINAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    FLOWER_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    model: str
    state: str
    reason: str
    rounds_done: int
    rounds_total: int
    settings: CampaignSettings
    final_version: str
    privacy: CampaignPrivacy
    flower_run_id: int
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    rounds: _containers.RepeatedCompositeFieldContainer[CampaignRound]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., rounds_done: _Optional[int] = ..., rounds_total: _Optional[int] = ..., settings: _Optional[_Union[CampaignSettings, _Mapping]] = ..., final_version: _Optional[str] = ..., privacy: _Optional[_Union[CampaignPrivacy, _Mapping]] = ..., flower_run_id: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rounds: _Optional[_Iterable[_Union[CampaignRound, _Mapping]]] = ...) -> None: ...
