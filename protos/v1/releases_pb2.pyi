import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelArtifact(_message.Message):
    __slots__ = ("variant", "size_bytes", "content_sha256", "target_path", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    variant: str
    size_bytes: int
    content_sha256: str
    target_path: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, variant: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_sha256: _Optional[str] = ..., target_path: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("ref", "family", "number", "content_sha256", "parent", "source", "parameter_count", "architecture", "metrics", "artifacts", "created_at", "created_by")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    ref: str
    family: str
    number: int
    content_sha256: str
    parent: str
    source: str
    parameter_count: int
    architecture: str
    metrics: _containers.ScalarMap[str, float]
    artifacts: _containers.RepeatedCompositeFieldContainer[ModelArtifact]
    created_at: _timestamp_pb2.Timestamp
    created_by: str
    def __init__(self, ref: _Optional[str] = ..., family: _Optional[str] = ..., number: _Optional[int] = ..., content_sha256: _Optional[str] = ..., parent: _Optional[str] = ..., source: _Optional[str] = ..., parameter_count: _Optional[int] = ..., architecture: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., artifacts: _Optional[_Iterable[_Union[ModelArtifact, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ...) -> None: ...

class ImportModelChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ImportModelHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ImportModelHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportModelHeader(_message.Message):
    __slots__ = ("family", "size_bytes", "parent", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    family: str
    size_bytes: int
    parent: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, family: _Optional[str] = ..., size_bytes: _Optional[int] = ..., parent: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("family",)
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    family: str
    def __init__(self, family: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("id", "version", "state", "targets_version", "artifacts", "notes", "created_at", "created_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    state: str
    targets_version: int
    artifacts: _containers.RepeatedCompositeFieldContainer[ModelArtifact]
    notes: str
    created_at: _timestamp_pb2.Timestamp
    created_by: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., targets_version: _Optional[int] = ..., artifacts: _Optional[_Iterable[_Union[ModelArtifact, _Mapping]]] = ..., notes: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ...) -> None: ...

class CreateReleaseRequest(_message.Message):
    __slots__ = ("version", "variants", "notes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    version: str
    variants: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    def __init__(self, version: _Optional[str] = ..., variants: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListReleasesResponse(_message.Message):
    __slots__ = ("releases",)
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    def __init__(self, releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ...) -> None: ...

class SigningKeyInfo(_message.Message):
    __slots__ = ("role", "keyid", "created_at")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    KEYID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    role: str
    keyid: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, role: _Optional[str] = ..., keyid: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: str
    def __init__(self, role: _Optional[str] = ...) -> None: ...

class RotateKeyResponse(_message.Message):
    __slots__ = ("old_key", "new_key", "root_version")
    OLD_KEY_FIELD_NUMBER: _ClassVar[int]
    NEW_KEY_FIELD_NUMBER: _ClassVar[int]
    ROOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    old_key: SigningKeyInfo
    new_key: SigningKeyInfo
    root_version: int
    def __init__(self, old_key: _Optional[_Union[SigningKeyInfo, _Mapping]] = ..., new_key: _Optional[_Union[SigningKeyInfo, _Mapping]] = ..., root_version: _Optional[int] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys", "root_version")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    ROOT_VERSION_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SigningKeyInfo]
    root_version: int
    def __init__(self, keys: _Optional[_Iterable[_Union[SigningKeyInfo, _Mapping]]] = ..., root_version: _Optional[int] = ...) -> None: ...

class RolloutStage(_message.Message):
    __slots__ = ("index", "fraction", "state", "devices", "healthy", "failed", "in_progress", "rolled_back")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    index: int
    fraction: float
    state: str
    devices: int
    healthy: int
    failed: int
    in_progress: int
    rolled_back: int
    def __init__(self, index: _Optional[int] = ..., fraction: _Optional[float] = ..., state: _Optional[str] = ..., devices: _Optional[int] = ..., healthy: _Optional[int] = ..., failed: _Optional[int] = ..., in_progress: _Optional[int] = ..., rolled_back: _Optional[int] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("id", "release_id", "version", "cohort", "state", "success_threshold", "max_failure", "current_stage", "stages", "reason", "created_at", "finished_at", "created_by", "bytes_sent", "full_bytes", "outlook", "rolled_back_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    FULL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTLOOK_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    release_id: str
    version: str
    cohort: str
    state: str
    success_threshold: float
    max_failure: float
    current_stage: int
    stages: _containers.RepeatedCompositeFieldContainer[RolloutStage]
    reason: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    created_by: str
    bytes_sent: int
    full_bytes: int
    outlook: str
    rolled_back_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., release_id: _Optional[str] = ..., version: _Optional[str] = ..., cohort: _Optional[str] = ..., state: _Optional[str] = ..., success_threshold: _Optional[float] = ..., max_failure: _Optional[float] = ..., current_stage: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[RolloutStage, _Mapping]]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., bytes_sent: _Optional[int] = ..., full_bytes: _Optional[int] = ..., outlook: _Optional[str] = ..., rolled_back_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRolloutRequest(_message.Message):
    __slots__ = ("release", "cohort", "stage_percents", "success_threshold_percent", "max_failure_percent", "zero_failure_tolerance")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    STAGE_PERCENTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ZERO_FAILURE_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    release: str
    cohort: str
    stage_percents: _containers.RepeatedScalarFieldContainer[float]
    success_threshold_percent: float
    max_failure_percent: float
    zero_failure_tolerance: bool
    def __init__(self, release: _Optional[str] = ..., cohort: _Optional[str] = ..., stage_percents: _Optional[_Iterable[float]] = ..., success_threshold_percent: _Optional[float] = ..., max_failure_percent: _Optional[float] = ..., zero_failure_tolerance: _Optional[bool] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class RolloutRef(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
