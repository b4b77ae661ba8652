from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, features: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("probabilities", "label", "label_name", "prediction_id", "model_version")
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    label: int
    label_name: str
    prediction_id: str
    model_version: str
    def __init__(self, probabilities: _Optional[_Iterable[float]] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., prediction_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model_version")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    model_version: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "max_new_tokens", "temperature", "seed", "stop")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    prompt: bytes
    max_new_tokens: int
    temperature: float
    seed: int
    stop: bytes
    def __init__(self, prompt: _Optional[bytes] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[bytes] = ...) -> None: ...

class GenerateChunk(_message.Message):
    __slots__ = ("token", "finished", "finish_reason", "model_version")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: bytes
    finished: bool
    finish_reason: str
    model_version: str
    def __init__(self, token: _Optional[bytes] = ..., finished: _Optional[bool] = ..., finish_reason: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("version", "variant", "architecture", "weight_bytes", "rss_bytes", "capabilities", "input_size", "labels")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    version: str
    variant: str
    architecture: str
    weight_bytes: int
    rss_bytes: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    input_size: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., variant: _Optional[str] = ..., architecture: _Optional[str] = ..., weight_bytes: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., input_size: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class SubmitExampleRequest(_message.Message):
    __slots__ = ("label", "text", "features")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    label: str
    text: str
    features: FeatureVector
    def __init__(self, label: _Optional[str] = ..., text: _Optional[str] = ..., features: _Optional[_Union[FeatureVector, _Mapping]] = ...) -> None: ...

class SubmitExampleResponse(_message.Message):
    __slots__ = ("example_id",)
    EXAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    example_id: int
    def __init__(self, example_id: _Optional[int] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("prediction_id", "correct_label")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRECT_LABEL_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    correct_label: str
    def __init__(self, prediction_id: _Optional[str] = ..., correct_label: _Optional[str] = ...) -> None: ...
