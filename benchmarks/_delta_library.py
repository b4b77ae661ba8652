"""The delta benchmark's seam to fedota.delta: every call it makes into the library, the modes it
measures, and the warm-up that loads the library's compiled code before anything is timed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import log, timed
from _delta_data import Model, tiny_pair, to_arrays, to_model
from safetensors.numpy import load_file, save_file

MODES: dict[str, dict[str, Any]] = {
    "lossless": {"lossless": True},
    "max_error_fp16": {"max_error": "fp16"},
    "max_rel_error_0.01": {"max_rel_error": 0.01},
}


@dataclass(frozen=True)
class Released:
    """One diff's serialized patch, the exact target it releases, and its codec choices."""

    patch: bytes
    target: Model
    codecs: dict[str, int]


class DeltaLib:
    """Every call the benchmark makes into fedota.delta, in one place (the API may still move).

    Raises:
        ImportError, AttributeError: the library lacks diff or apply.
    """

    def __init__(self) -> None:
        import fedota.delta as delta
        import fedota.delta.codecs  # noqa: F401  (registers every codec)

        self._diff = delta.diff
        self._apply = delta.apply
        self.streaming_apply = getattr(delta, "apply_file", None)

    def codec_names(self) -> list[str]:
        from fedota.delta.codecs.base import registered

        return [c.name for c in registered()]

    def lossy(self, name: str) -> bool:
        from fedota.delta.codecs.base import registered

        return any(c.lossy for c in registered() if c.name == name)

    def diff(self, base: Model, target: Model, mode: str, codec: str | None) -> Released:
        kwargs = dict(MODES[mode])
        if codec is not None:
            kwargs["codecs"] = [codec]
        patch = self._diff(base, target, **kwargs)
        used = Counter(_entry_label(e) for e in patch.entries)
        return Released(patch.to_bytes(), dict(patch.target), dict(sorted(used.items())))

    def apply(self, base: Model, patch: bytes) -> Model:
        """Parse, check the base, decode every tensor, check the target hash."""
        return dict(self._apply(base, patch))

    def apply_file(self, base: Path, patch: Path, out: Path) -> None:
        """Streaming apply if the library has it; otherwise load, apply in memory and save."""
        if self.streaming_apply is not None:
            self.streaming_apply(base, patch, out)
            return
        model = self.apply(to_model(load_file(str(base))), patch.read_bytes())
        save_file(to_arrays(model), str(out))


def _entry_label(entry: Any) -> str:
    """The codec's name for a tensor with a payload, else the entry's op (unchanged, removed)."""
    from fedota.delta.codecs.base import by_id

    if not entry.has_payload:
        return str(entry.op.name).lower()
    codec = by_id(entry.codec_id)
    return codec.name if codec is not None else f"codec {entry.codec_id}"


def load_library() -> tuple[DeltaLib | None, str | None]:
    """The library seam, or None and why not."""
    try:
        return DeltaLib(), None
    except (ImportError, AttributeError) as exc:
        return None, f"fedota.delta not usable yet: {type(exc).__name__}: {exc}"


def warm_up(lib: DeltaLib) -> float:
    """Each mode's diff and apply once on a tiny model; its wall seconds.

    The first call in a process loads (or, with a cold cache, compiles) the library's numba
    kernels; after this, timed calls measure the steady state. A mode that fails here is left
    for its measurement to report.
    """
    base, trained = tiny_pair()
    with timed() as box:
        for mode in MODES:
            try:
                lib.apply(base, lib.diff(base, trained, mode, None).patch)
            except Exception as exc:  # the timed call of this mode records the error
                log(f"  warm-up {mode}: {type(exc).__name__}: {exc}")
    return round(box[0].wall_s, 3)
