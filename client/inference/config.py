"""Every bound of the local inference server in one place, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class InferenceConfig:
    """Batching, queue bounds, request limits and timeouts of `InferenceServer`.

    Attributes:
        max_batch: items per model call (Predict rows, Embed texts); 1 serves one at a time.
        max_wait: how long the batcher holds a request for the company it expects (as many
            items as its previous batch held), seconds; a lone caller is never held.
        max_queue: Predict or Embed requests waiting per model; beyond it RESOURCE_EXHAUSTED.
        max_generate_pending: Generate requests waiting for the engine thread to admit them.
        max_embed_texts: texts per Embed request.
        max_text_bytes: UTF-8 bytes per Embed text.
        max_prompt_bytes: bytes per Generate prompt.
        max_new_tokens: upper bound of GenerateRequest.max_new_tokens.
        prediction_cache: recent predictions kept for SubmitFeedback.
        prediction_ttl: how long a prediction accepts feedback, seconds.
        prediction_cache_bytes: bytes of inputs the prediction cache may hold.
        request_timeout: longest wait for a result when the caller set no deadline, seconds.
        max_workers: gRPC handler threads (each open Generate stream holds one).
        max_concurrent_rpcs: calls in progress or queued for a thread; beyond it gRPC itself
            answers RESOURCE_EXHAUSTED.
        max_message_bytes: largest request or response message.
        stop_grace: how long `stop()` lets calls in flight finish, seconds.
    """

    max_batch: int = 16
    max_wait: float = 0.002
    max_queue: int = 64
    max_generate_pending: int = 32
    max_embed_texts: int = 64
    max_text_bytes: int = 16_384
    max_prompt_bytes: int = 8_192
    max_new_tokens: int = 2_048
    prediction_cache: int = 4_096
    prediction_ttl: float = 3_600.0
    prediction_cache_bytes: int = 16 * 1024 * 1024
    request_timeout: float = 60.0
    max_workers: int = 32
    max_concurrent_rpcs: int = 256
    max_message_bytes: int = 4 * 1024 * 1024
    stop_grace: float = 5.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "max_wait":
                if value < 0:
                    raise ValueError(f"InferenceConfig.max_wait must be >= 0, got {value}")
            elif value <= 0:
                raise ValueError(f"InferenceConfig.{field.name} must be positive, got {value}")
        if self.max_concurrent_rpcs < self.max_workers:
            raise ValueError(
                f"InferenceConfig.max_concurrent_rpcs ({self.max_concurrent_rpcs}) is below "
                f"max_workers ({self.max_workers})"
            )


__all__ = ["InferenceConfig"]
