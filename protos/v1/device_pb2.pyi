import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATE_UNSPECIFIED: _ClassVar[DeviceState]
    DEVICE_STATE_PENDING: _ClassVar[DeviceState]
    DEVICE_STATE_ACCEPTED: _ClassVar[DeviceState]
    DEVICE_STATE_REJECTED: _ClassVar[DeviceState]
    DEVICE_STATE_REVOKED: _ClassVar[DeviceState]
DEVICE_STATE_UNSPECIFIED: DeviceState
DEVICE_STATE_PENDING: DeviceState
DEVICE_STATE_ACCEPTED: DeviceState
DEVICE_STATE_REJECTED: DeviceState
DEVICE_STATE_REVOKED: DeviceState

class HardwareProfile(_message.Message):
    __slots__ = ("hardware_class", "cpu_model", "cpu_count", "memory_bytes", "os", "python_version", "torch_version", "daemon_version")
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    DAEMON_VERSION_FIELD_NUMBER: _ClassVar[int]
    hardware_class: str
    cpu_model: str
    cpu_count: int
    memory_bytes: int
    os: str
    python_version: str
    torch_version: str
    daemon_version: str
    def __init__(self, hardware_class: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., python_version: _Optional[str] = ..., torch_version: _Optional[str] = ..., daemon_version: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "state", "fleet", "cohort", "hardware_class", "hardware", "labels", "enrolled_at", "last_seen", "model_version", "certificate_serial", "certificate_expires_at", "public_key_sha256", "state_reason")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    COHORT_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SERIAL_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: DeviceState
    fleet: str
    cohort: str
    hardware_class: str
    hardware: HardwareProfile
    labels: _containers.ScalarMap[str, str]
    enrolled_at: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    model_version: str
    certificate_serial: str
    certificate_expires_at: _timestamp_pb2.Timestamp
    public_key_sha256: str
    state_reason: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[DeviceState, str]] = ..., fleet: _Optional[str] = ..., cohort: _Optional[str] = ..., hardware_class: _Optional[str] = ..., hardware: _Optional[_Union[HardwareProfile, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model_version: _Optional[str] = ..., certificate_serial: _Optional[str] = ..., certificate_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., public_key_sha256: _Optional[str] = ..., state_reason: _Optional[str] = ...) -> None: ...
