from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssignmentAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSIGNMENT_ACTION_UNSPECIFIED: _ClassVar[AssignmentAction]
    ASSIGNMENT_ACTION_NONE: _ClassVar[AssignmentAction]
    ASSIGNMENT_ACTION_INSTALL: _ClassVar[AssignmentAction]

class UpdateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_STATUS_UNSPECIFIED: _ClassVar[UpdateStatus]
    UPDATE_STATUS_DOWNLOADING: _ClassVar[UpdateStatus]
    UPDATE_STATUS_VERIFYING: _ClassVar[UpdateStatus]
    UPDATE_STATUS_APPLYING: _ClassVar[UpdateStatus]
    UPDATE_STATUS_HEALTH_CHECKING: _ClassVar[UpdateStatus]
    UPDATE_STATUS_HEALTHY: _ClassVar[UpdateStatus]
    UPDATE_STATUS_FAILED: _ClassVar[UpdateStatus]
    UPDATE_STATUS_ROLLED_BACK: _ClassVar[UpdateStatus]
ASSIGNMENT_ACTION_UNSPECIFIED: AssignmentAction
ASSIGNMENT_ACTION_NONE: AssignmentAction
ASSIGNMENT_ACTION_INSTALL: AssignmentAction
UPDATE_STATUS_UNSPECIFIED: UpdateStatus
UPDATE_STATUS_DOWNLOADING: UpdateStatus
UPDATE_STATUS_VERIFYING: UpdateStatus
UPDATE_STATUS_APPLYING: UpdateStatus
UPDATE_STATUS_HEALTH_CHECKING: UpdateStatus
UPDATE_STATUS_HEALTHY: UpdateStatus
UPDATE_STATUS_FAILED: UpdateStatus
UPDATE_STATUS_ROLLED_BACK: UpdateStatus

class FetchRequest(_message.Message):
    __slots__ = ("path", "offset")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    path: str
    offset: int
    def __init__(self, path: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class FetchChunk(_message.Message):
    __slots__ = ("data", "total_length")
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    total_length: int
    def __init__(self, data: _Optional[bytes] = ..., total_length: _Optional[int] = ...) -> None: ...

class GetAssignmentRequest(_message.Message):
    __slots__ = ("content_sha256",)
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    content_sha256: str
    def __init__(self, content_sha256: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("action", "rollout_id", "target_path", "patch_path", "rollback")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    PATCH_PATH_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    action: AssignmentAction
    rollout_id: str
    target_path: str
    patch_path: str
    rollback: bool
    def __init__(self, action: _Optional[_Union[AssignmentAction, str]] = ..., rollout_id: _Optional[str] = ..., target_path: _Optional[str] = ..., patch_path: _Optional[str] = ..., rollback: _Optional[bool] = ...) -> None: ...

class ReportStatusRequest(_message.Message):
    __slots__ = ("rollout_id", "status", "reason", "content_sha256", "bytes_received")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    status: UpdateStatus
    reason: str
    content_sha256: str
    bytes_received: int
    def __init__(self, rollout_id: _Optional[str] = ..., status: _Optional[_Union[UpdateStatus, str]] = ..., reason: _Optional[str] = ..., content_sha256: _Optional[str] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class ReportStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
