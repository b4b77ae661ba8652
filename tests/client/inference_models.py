"""Small but real torch models for the inference-server tests (imported by name from this folder).

`ReferenceModel` is a `ServedModel` made of three seeded networks: an MLP classifier over 64
features, a byte EmbeddingBag embedder, and a GRU byte generator driven by `TinyEngine`, which
implements `fedota.ml.lm.GenerationEngine`'s interface with one batched torch step for all active
sequences. Two models of different seeds compute different answers, so a test can tell which
version answered. The instrumentation (call records, gates that hold `predict` and engine steps)
observes or delays real computation; it never replaces it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedota.client.inference import (
    Capability,
    GenerationParams,
    InferenceError,
    InvalidInput,
    ModelInfo,
    Overloaded,
)

INPUT_SIZE = 64
CLASSES = 10
EMBED_DIM = 16
HIDDEN = 32
EOS = 256
VOCAB = 257
ALL = frozenset(Capability)


class EngineFull(Exception):
    """The engine holds max_batch sequences (as fedota.ml.lm.EngineFull)."""


class InvalidRequest(Exception):
    """The engine refuses a request (as fedota.ml.lm.InvalidRequest)."""


# What the tests tell the server about the errors of these stand-ins.
ERRORS: dict[type[BaseException], type[InferenceError]] = {
    EngineFull: Overloaded,
    InvalidRequest: InvalidInput,
}


class Gate:
    """Holds the callers of a real computation until opened (or let through a few at a time),
    and counts them as they arrive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._permits = 0
        self.arrived = 0

    def close(self) -> None:
        with self._cond:
            self._open = False

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def allow(self, count: int) -> None:
        """Let `count` more callers through a closed gate."""
        with self._cond:
            self._permits += count
            self._cond.notify_all()

    def enter(self, timeout: float = 30.0) -> None:
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._open or self._permits > 0, timeout):
                raise TimeoutError("the test never opened the gate")
            if not self._open:
                self._permits -= 1

    def wait_arrivals(self, count: int, timeout: float = 10.0) -> bool:
        """True once `count` callers in all have arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= count, timeout)


@dataclass(frozen=True)
class TokenEvent:
    seq_id: int
    token: bytes
    finished: bool
    reason: str | None


@dataclass
class _Sequence:
    seq_id: int
    request: GenerationParams
    hidden: torch.Tensor | None = None
    last: int = 0
    out: bytearray = field(default_factory=bytearray)
    generator: torch.Generator | None = None


class _Generator(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 16)
        self.cell = torch.nn.GRUCell(16, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, VOCAB)
        with torch.no_grad():
            # Printable ASCII only, so that the CLI prints text; random weights would also stop
            # early at EOS.
            self.head.bias[:32] -= 30.0
            self.head.bias[127:EOS] -= 30.0
            self.head.bias[EOS] -= 4.0

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        return self.cell(self.embed(tokens), hidden)


class TinyEngine:
    """Continuous batching over `_Generator`; single-threaded like fedota.ml.lm's engine."""

    def __init__(self, net: _Generator, *, max_batch: int = 8, gate: Gate | None = None) -> None:
        self._net = net
        self._gate = gate or Gate()
        self._max_batch = max_batch
        self._next_id = 0
        self._waiting: list[_Sequence] = []
        self._active: dict[int, _Sequence] = {}
        self.thread_ids: set[int] = set()
        self.batch_sizes: list[int] = []
        self.cancelled: list[int] = []
        self.broken = False

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, request: GenerationParams) -> int:
        self.thread_ids.add(threading.get_ident())
        if not request.prompt:
            raise InvalidRequest("the prompt is empty")
        if request.max_new_tokens < 1:
            raise InvalidRequest(f"max_new_tokens must be >= 1, got {request.max_new_tokens}")
        if self.active + self.waiting >= self._max_batch:
            raise EngineFull(f"the engine holds {self._max_batch} sequences")
        self._next_id += 1
        sequence = _Sequence(self._next_id, request)
        if request.seed is not None:
            sequence.generator = torch.Generator().manual_seed(request.seed)
        self._waiting.append(sequence)
        return sequence.seq_id

    def cancel(self, seq_id: int) -> None:
        self.thread_ids.add(threading.get_ident())
        self.cancelled.append(seq_id)
        self._active.pop(seq_id, None)
        self._waiting = [s for s in self._waiting if s.seq_id != seq_id]

    @torch.inference_mode()
    def step(self) -> list[TokenEvent]:
        self.thread_ids.add(threading.get_ident())
        self._gate.enter()
        if self.broken:
            raise RuntimeError("the test broke this engine")
        for sequence in self._waiting:  # prefill all but the last prompt byte
            prompt = torch.tensor(list(sequence.request.prompt), dtype=torch.long)
            hidden = None
            for token in prompt[:-1]:
                hidden = self._net(token.view(1), hidden)
            sequence.hidden = hidden
            sequence.last = int(prompt[-1])
            self._active[sequence.seq_id] = sequence
        self._waiting = []
        if not self._active:
            return []
        sequences = list(self._active.values())
        self.batch_sizes.append(len(sequences))
        tokens = torch.tensor([s.last for s in sequences], dtype=torch.long)
        hidden = torch.cat(
            [
                s.hidden if s.hidden is not None else torch.zeros(1, HIDDEN, dtype=torch.float64)
                for s in sequences
            ]
        )
        hidden = self._net(tokens, hidden)  # one decode step for every active sequence
        logits = self._net.head(hidden)
        events = []
        for row, sequence in enumerate(sequences):
            sequence.hidden = hidden[row : row + 1]
            events.append(self._emit(sequence, logits[row]))
        return events

    def _emit(self, sequence: _Sequence, logits: torch.Tensor) -> TokenEvent:
        request = sequence.request
        if request.temperature > 0:
            probabilities = torch.softmax(logits / request.temperature, dim=-1)
            token = int(torch.multinomial(probabilities, 1, generator=sequence.generator))
        else:
            token = int(torch.argmax(logits))
        sequence.last = token
        if token == EOS:
            return self._finish(sequence, b"", "eos")
        piece = bytes([token])
        sequence.out += piece
        if request.stop and sequence.out.endswith(request.stop):
            return self._finish(sequence, piece, "stop")
        if len(sequence.out) >= request.max_new_tokens:
            return self._finish(sequence, piece, "length")
        return TokenEvent(sequence.seq_id, piece, False, None)

    def _finish(self, sequence: _Sequence, piece: bytes, reason: str) -> TokenEvent:
        del self._active[sequence.seq_id]
        return TokenEvent(sequence.seq_id, piece, True, reason)


class ReferenceModel:
    """A `ServedModel` of real seeded torch networks; exposes only the given capabilities."""

    def __init__(
        self,
        version: str,
        seed: int,
        capabilities: Iterable[Capability] = ALL,
        *,
        labels: tuple[str, ...] = (),
        engine_batch: int = 8,
    ) -> None:
        torch.manual_seed(seed)
        self.classifier = torch.nn.Sequential(
            torch.nn.Linear(INPUT_SIZE, 32), torch.nn.ReLU(), torch.nn.Linear(32, CLASSES)
        )
        self.embedder = torch.nn.EmbeddingBag(256, EMBED_DIM, mode="mean")
        self.generator = _Generator().double()
        self._capabilities = frozenset(capabilities)
        self._engine_batch = engine_batch
        weights = sum(
            p.numel() * p.element_size()
            for net in (self.classifier, self.embedder, self.generator)
            for p in net.parameters()
        )
        self._info = ModelInfo(
            version=version,
            variant="fp32",
            architecture="reference-mlp-bag-gru",
            weight_bytes=weights,
            input_size=INPUT_SIZE if Capability.PREDICT in self._capabilities else None,
            labels=labels,
        )
        self.lock = threading.Lock()
        self.predict_calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.embed_batches: list[int] = []
        self.engines: list[TinyEngine] = []
        self.predict_gate = Gate()
        self.step_gate = Gate()
        self.closed = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._capabilities

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.predict_gate.enter()
        probabilities = self._probabilities(batch)
        with self.lock:
            self.predict_calls.append((batch.copy(), probabilities.copy()))
        return probabilities

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._vectors(texts)
        with self.lock:
            self.embed_batches.append(len(texts))
        return vectors

    def new_engine(self) -> TinyEngine:
        engine = TinyEngine(self.generator, max_batch=self._engine_batch, gate=self.step_gate)
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        self.closed += 1

    def predict_one(self, features: Sequence[float]) -> np.ndarray:
        """What the model answers for this row alone, outside the server."""
        return self._probabilities(np.asarray([features], dtype=np.float32))[0]

    def embed_one(self, text: str) -> np.ndarray:
        """The vector of this text alone, outside the server."""
        return self._vectors([text])[0]

    @torch.inference_mode()
    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        logits = self.classifier(torch.from_numpy(batch))
        return torch.softmax(logits, dim=-1).numpy()

    @torch.inference_mode()
    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        encoded = [list(text.encode("utf-8")) for text in texts]
        offsets = torch.tensor([0, *np.cumsum([len(e) for e in encoded])[:-1]], dtype=torch.long)
        flat = torch.tensor([b for e in encoded for b in e], dtype=torch.long)
        return torch.nn.functional.normalize(self.embedder(flat, offsets), dim=-1).numpy()

    def generate_alone(self, params: GenerationParams) -> tuple[bytes, str]:
        """Run one request alone on a fresh engine: its bytes and finish reason."""
        engine = TinyEngine(self.generator)
        seq_id = engine.submit(params)
        out = bytearray()
        for _ in range(params.max_new_tokens + 1):
            for event in engine.step():
                assert event.seq_id == seq_id
                out += event.token
                if event.finished:
                    return bytes(out), str(event.reason)
        raise AssertionError("the engine never finished the sequence")
