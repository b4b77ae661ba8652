"""fedota.client.inference: the device's local inference API (gRPC on a Unix socket).

`InferenceServer` (or `serve`) serves a `ServedModel`: Predict and Embed through dynamic batching,
Generate through a continuous-batching engine driven by one thread, ModelInfo, and the data loop's
SubmitExample/SubmitFeedback into an `ExampleSink`. `swap` replaces the model without failing a
request. Bounded queues answer RESOURCE_EXHAUSTED when full; every error maps to one status code
in `errors.status_of`.
"""

from fedota.client.inference.config import InferenceConfig
from fedota.client.inference.errors import (
    Cancelled,
    ErrorTable,
    InferenceError,
    InvalidInput,
    ModelFailed,
    NoModel,
    Overloaded,
    SocketInUse,
    Stopping,
    StoreFailed,
    TimedOut,
    UnknownPrediction,
    Unsupported,
    status_of,
)
from fedota.client.inference.examples import (
    SOURCE_APP,
    SOURCE_FEEDBACK,
    ExampleSink,
)
from fedota.client.inference.memory import process_rss
from fedota.client.inference.model import (
    Capability,
    GenerationEngine,
    GenerationParams,
    ModelInfo,
    ServedModel,
    TokenEventLike,
)
from fedota.client.inference.server import (
    MAX_SOCKET_PATH,
    SOCKET_MODE,
    SOCKET_NAME,
    InferenceServer,
    default_socket_path,
    serve,
)
from fedota.client.inference.swap import Released

__all__ = [
    "MAX_SOCKET_PATH",
    "SOCKET_MODE",
    "SOCKET_NAME",
    "SOURCE_APP",
    "SOURCE_FEEDBACK",
    "Cancelled",
    "Capability",
    "ErrorTable",
    "ExampleSink",
    "GenerationEngine",
    "GenerationParams",
    "InferenceConfig",
    "InferenceError",
    "InferenceServer",
    "InvalidInput",
    "ModelFailed",
    "ModelInfo",
    "NoModel",
    "Overloaded",
    "Released",
    "ServedModel",
    "SocketInUse",
    "Stopping",
    "StoreFailed",
    "TimedOut",
    "TokenEventLike",
    "UnknownPrediction",
    "Unsupported",
    "default_socket_path",
    "process_rss",
    "serve",
    "status_of",
]
