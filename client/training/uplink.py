"""The device's side of a compressed uplink: error feedback, and its residual kept on disk.

Error feedback (Seide et al. 2014; Karimireddy et al. 2019, EF-SGD): the device adds what
compression dropped last round to this round's update before compressing it, and keeps what is
dropped now for the next round. The sum of what the server receives over the rounds then tracks
the sum of the true updates up to one residual, instead of losing the dropped part every round.

The residual is per campaign (a new campaign or a change of trainable tensors starts from
zero) and is saved atomically in the device's state directory, so a restart keeps it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedota.delta.uplink import UplinkSpec, encode

Arrays = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class CompressedUpdate:
    """The payload to send, its size, and the residual to keep for the next round."""

    payload: bytes
    residual: dict[str, np.ndarray]

    @property
    def nbytes(self) -> int:
        return len(self.payload)


def compress_with_feedback(
    update: Arrays, spec: UplinkSpec, residual: Arrays | None = None
) -> CompressedUpdate:
    """Encode update + residual per `spec`; the new residual is what the encoding dropped.

    A residual whose tensors or shapes differ from the update's is ignored (a new model).

    Raises:
        ValueError: the update holds non-finite values.
    """
    if residual is not None and _fits(residual, update):
        corrected = {n: np.asarray(a, np.float32) + residual[n] for n, a in update.items()}
    else:
        corrected = {n: np.asarray(a, np.float32) for n, a in update.items()}
    encoded = encode(corrected, spec)
    new_residual = {n: (corrected[n] - encoded.decoded[n]).astype(np.float32) for n in corrected}
    return CompressedUpdate(encoded.payload, new_residual)


class ResidualStore:
    """One campaign's residual in `directory/uplink-residual.npz` (0600), replaced atomically.

    Raises (both methods):
        OSError: the directory cannot be read or written.
    """

    FILE = "uplink-residual.npz"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._path = Path(directory) / self.FILE

    def load(self, campaign: str, like: Arrays) -> dict[str, np.ndarray] | None:
        """The residual saved for `campaign` if it fits `like`'s tensors; None otherwise
        (none saved, another campaign, other tensors, or an unreadable file)."""
        try:
            with np.load(self._path, allow_pickle=False) as archive:
                meta = json.loads(bytes(archive["__meta__"]).decode("utf-8"))
                if meta.get("campaign") != campaign:
                    return None
                names = meta.get("names", [])
                residual = {n: archive[f"t{i}"].astype(np.float32) for i, n in enumerate(names)}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # a damaged residual only costs the dropped part of one round
        return residual if _fits(residual, like) else None

    def save(self, campaign: str, residual: Arrays) -> None:
        """Replace the saved residual with this campaign's."""
        names = sorted(residual)
        meta = json.dumps({"campaign": campaign, "names": names}).encode("utf-8")
        arrays = {f"t{i}": np.asarray(residual[n], np.float32) for i, n in enumerate(names)}
        # mkstemp creates the file 0600 (the residual derives from the device's data), then
        # fsync and rename: the old residual stays whole until the new one is.
        fd, temp = tempfile.mkstemp(prefix=f".{self.FILE}.", dir=self._path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, __meta__=np.frombuffer(meta, dtype=np.uint8), **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self._path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Forget the residual (the campaign ended)."""
        self._path.unlink(missing_ok=True)


def _fits(residual: Arrays, like: Arrays) -> bool:
    return set(residual) == set(like) and all(
        np.shape(residual[n]) == np.shape(like[n]) for n in like
    )


__all__ = ["CompressedUpdate", "ResidualStore", "compress_with_feedback"]
