import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fedota.protos.v1 import device_pb2 as _device_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollRequest(_message.Message):
    __slots__ = ("token", "csr_pem", "hardware", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    hardware: _device_pb2.HardwareProfile
    labels: _containers.ScalarMap[str, str]
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ..., hardware: _Optional[_Union[_device_pb2.HardwareProfile, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("device_id", "state", "certificate_pem", "ca_certificate_pem", "certificate_expires_at", "device_host", "device_port", "heartbeat_interval_seconds", "update_root_json")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_HOST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_PORT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_ROOT_JSON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    state: _device_pb2.DeviceState
    certificate_pem: bytes
    ca_certificate_pem: bytes
    certificate_expires_at: _timestamp_pb2.Timestamp
    device_host: str
    device_port: int
    heartbeat_interval_seconds: int
    update_root_json: bytes
    def __init__(self, device_id: _Optional[str] = ..., state: _Optional[_Union[_device_pb2.DeviceState, str]] = ..., certificate_pem: _Optional[bytes] = ..., ca_certificate_pem: _Optional[bytes] = ..., certificate_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_host: _Optional[str] = ..., device_port: _Optional[int] = ..., heartbeat_interval_seconds: _Optional[int] = ..., update_root_json: _Optional[bytes] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("model_version", "uptime_seconds", "available_memory_bytes")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    uptime_seconds: int
    available_memory_bytes: int
    def __init__(self, model_version: _Optional[str] = ..., uptime_seconds: _Optional[int] = ..., available_memory_bytes: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("state", "server_time", "heartbeat_interval_seconds", "certificate_expires_at", "renew_certificate", "federation_host", "federation_port")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RENEW_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_HOST_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_PORT_FIELD_NUMBER: _ClassVar[int]
    state: _device_pb2.DeviceState
    server_time: _timestamp_pb2.Timestamp
    heartbeat_interval_seconds: int
    certificate_expires_at: _timestamp_pb2.Timestamp
    renew_certificate: bool
    federation_host: str
    federation_port: int
    def __init__(self, state: _Optional[_Union[_device_pb2.DeviceState, str]] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_interval_seconds: _Optional[int] = ..., certificate_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renew_certificate: _Optional[bool] = ..., federation_host: _Optional[str] = ..., federation_port: _Optional[int] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenewCertificateRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class RenewCertificateResponse(_message.Message):
    __slots__ = ("certificate_pem", "certificate_expires_at")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    certificate_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, certificate_pem: _Optional[bytes] = ..., certificate_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
