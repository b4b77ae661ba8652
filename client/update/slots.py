"""The device's A/B model slots in the state directory, and the pointer to the one it runs.

Layout (under `<state>/models/`):

    a/model.safetensors   the model of slot a
    a/slot.json           what slot a holds (signed target, installed-at, size); written only
                          once the model's canonical hash matched the signed content_sha256
    b/...                 the same for slot b
    active.json           {"active": "a", "previous": "b", "pending": false}
    slots.lock            flock'd by the one process that changes slots

A slot is *committed* when its `slot.json` exists: only a committed slot is ever pointed to, and
`slot.json` is removed before anything else of a slot is cleared. `active.json` flips atomically
(temp file, fsync, rename, directory fsync), so after any crash the pointer names a committed
slot or none. `pending` marks a switch whose health check has not passed yet: the next start
re-runs the check (see `fedota.client.update.install.recover`).

Callers hold `lock()` around every change; reads need no lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedota.client.update import durable
from fedota.client.update.apply_errors import (
    ContentMismatch,
    ModelFileInvalid,
    SlotError,
    SlotsBusy,
)
from fedota.delta import PatchError, SafetensorsFile, model_hash
from fedota.update_targets import ArtifactTarget, TargetInfoError

MODELS_DIR = "models"
SLOT_NAMES = ("a", "b")
MODEL_FILE = "model.safetensors"
SLOT_FILE = "slot.json"
POINTER_FILE = "active.json"
LOCK_FILE = "slots.lock"
DIR_MODE = 0o700


def target_from_record(data: object) -> ArtifactTarget:
    """The artifact target a slot or journal record holds (`dataclasses.asdict` of one).

    Raises:
        ValueError: a field is missing or invalid.
    """
    if not isinstance(data, dict):
        raise ValueError("a target record must be a JSON object")
    try:
        return ArtifactTarget(
            family=data["family"],
            version=data["version"],
            variant=data["variant"],
            content_sha256=data["content_sha256"],
        )
    except KeyError as exc:
        raise ValueError(f"the target record lacks {exc.args[0]!r}") from None
    except TargetInfoError as exc:
        raise ValueError(f"invalid target record: {exc}") from None


@dataclass(frozen=True)
class Slot:
    """A committed slot: its verified model and the signed artifact it was verified against."""

    name: str
    directory: Path
    target: ArtifactTarget
    installed_at: str
    size: int

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def content_sha256(self) -> str:
        return self.target.content_sha256


@dataclass(frozen=True)
class Pointer:
    """Which slot runs (`active`), which one a rollback returns to, and whether the switch to
    `active` still waits for its health check (`pending`)."""

    active: str | None = None
    previous: str | None = None
    pending: bool = False

    def __post_init__(self) -> None:
        for name in (self.active, self.previous):
            if name is not None and name not in SLOT_NAMES:
                raise ValueError(f"slot names are {SLOT_NAMES}, got {name!r}")
        if self.previous is not None and self.active in (None, self.previous):
            raise ValueError("a previous slot needs an active one, and the two must differ")
        if not isinstance(self.pending, bool) or (self.pending and self.active is None):
            raise ValueError("pending must be a bool, and true only with an active slot")


class SlotStore:
    """The two slots and the pointer under `<state_dir>/models`; never points at a broken slot."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir) / MODELS_DIR

    def __str__(self) -> str:
        return str(self.root)

    # -- reading ---------------------------------------------------------------------------

    def pointer(self) -> Pointer:
        """The pointer as on disk; an empty one when no model was ever installed.

        Raises:
            SlotError: the pointer is unreadable or corrupt.
        """
        path = self.root / POINTER_FILE
        data = self._read_json(path)
        if data is None:
            return Pointer()
        try:
            return Pointer(data["active"], data["previous"], data["pending"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SlotError(f"{path} is corrupt: {exc}") from None

    def slot(self, name: str) -> Slot | None:
        """Slot `name` if it is committed, else None.

        Raises:
            SlotError: its slot.json is unreadable or corrupt.
        """
        directory = self.root / name
        path = directory / SLOT_FILE
        data = self._read_json(path)
        if data is None:
            return None
        try:
            target = target_from_record(data["target"])
            installed_at, size = data["installed_at"], data["size"]
            if not isinstance(installed_at, str) or not isinstance(size, int):
                raise ValueError("installed_at must be a string and size an int")
        except (KeyError, TypeError, ValueError) as exc:
            raise SlotError(f"{path} is corrupt: {exc}") from None
        return Slot(name, directory, target, installed_at, size)

    def active(self) -> Slot | None:
        """The slot the device runs, or None when it runs no model yet.

        Raises:
            SlotError: the pointer is corrupt or names a slot that is not committed.
        """
        return self._pointed(self.pointer().active)

    def previous(self) -> Slot | None:
        """The slot a rollback returns to, or None.

        Raises:
            SlotError: the pointer is corrupt or names a slot that is not committed.
        """
        return self._pointed(self.pointer().previous)

    def inactive_name(self) -> str:
        """The slot an install writes into: the one that is not active.

        Raises:
            SlotError: the pointer is corrupt.
        """
        active = self.pointer().active
        return SLOT_NAMES[1] if active == SLOT_NAMES[0] else SLOT_NAMES[0]

    # -- changing (hold lock()) --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the slots for this process; the kernel releases the lock if the process dies.

        Raises:
            SlotsBusy: another process holds them.
            SlotError: the models directory cannot be created.
        """
        self._ensure_dirs()
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, durable.FILE_MODE)
        except OSError as exc:
            raise SlotError(f"cannot open {self.root / LOCK_FILE}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SlotsBusy(
                    f"another process is changing the models in {self.root}; "
                    "is a second daemon running on this state directory?"
                ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor drops the lock

    def begin_install(self) -> Path:
        """Empty the inactive slot for a new model; the path to write the model file to.

        The pointer stops naming the slot as `previous` before a byte of it is cleared.

        Raises:
            RuntimeError: a switch is pending its health check (confirm or roll back first).
            SlotError: the slot cannot be cleared.
        """
        pointer = self.pointer()
        if pointer.pending:
            raise RuntimeError("a switch is waiting for its health check; confirm or roll back")
        name = self.inactive_name()
        self.discard(name)
        return self.root / name / MODEL_FILE

    def commit_install(self, target: ArtifactTarget) -> Slot:
        """Commit the model written into the inactive slot, once it hashes to `target`.

        The canonical hash is checked first; only then is the file fsynced and slot.json
        written, so a slot is committed only with a complete, verified model.

        Raises:
            ModelFileInvalid: the written file is not a valid safetensors file.
            ContentMismatch: it does not hash to `target.content_sha256`.
            RuntimeError: nothing was written to the slot (caller misuse).
            SlotError: the slot cannot be read or written.
        """
        name = self.inactive_name()
        directory = self.root / name
        model = directory / MODEL_FILE
        actual = self.content_hash(model)
        if actual != target.content_sha256:
            raise ContentMismatch(target.content_sha256, actual)
        installed_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            durable.fsync_file(model)
            size = model.stat().st_size
            durable.write_json(
                directory / SLOT_FILE,
                {"target": asdict(target), "installed_at": installed_at, "size": size},
            )
        except OSError as exc:
            raise SlotError(f"cannot commit slot {name} in {self.root}: {exc.strerror}") from None
        return Slot(name, directory, target, installed_at, size)

    def switch(self) -> Slot:
        """Point at the committed inactive slot, pending its health check; the new active slot.

        Raises:
            RuntimeError: the inactive slot is not committed, or a switch is already pending.
            SlotError: the slot's file is not the size it was committed at, or the pointer
                cannot be written.
        """
        pointer = self.pointer()
        if pointer.pending:
            raise RuntimeError("a switch is already waiting for its health check")
        name = self.inactive_name()
        slot = self.slot(name)
        if slot is None:
            raise RuntimeError(f"slot {name} holds no committed model to switch to")
        self._check_size(slot)
        self._write_pointer(Pointer(active=name, previous=pointer.active, pending=True))
        return slot

    def confirm(self) -> Slot:
        """The health check passed: the pending switch becomes final; the active slot.

        Raises:
            RuntimeError: no switch is pending.
            SlotError: the pointer cannot be written.
        """
        pointer = self.pointer()
        if not pointer.pending:
            raise RuntimeError("no switch is waiting for its health check")
        slot = self.active()
        assert slot is not None  # a pending pointer always names a slot
        self._write_pointer(Pointer(pointer.active, pointer.previous, pending=False))
        return slot

    def rollback(self) -> Slot | None:
        """Point back at the previous slot and discard the one that was active; the new active
        slot (None when the failed install was the device's first model).

        Raises:
            RuntimeError: no switch is pending and there is no previous slot to return to.
            SlotError: the previous slot is not committed, or a file cannot be written.
        """
        pointer = self.pointer()
        if pointer.previous is None and not pointer.pending:
            raise RuntimeError("there is no previous model to roll back to")
        previous = self._pointed(pointer.previous)
        if previous is not None:
            self._check_size(previous)
        self._write_pointer(Pointer(active=pointer.previous, previous=None, pending=False))
        if pointer.active is not None:
            self.discard(pointer.active)
        return previous

    def discard(self, name: str) -> None:
        """Clear slot `name` (uncommit it first); it must not be the active one.

        Raises:
            RuntimeError: `name` is the active slot.
            SlotError: a file cannot be removed or the pointer cannot be written.
        """
        pointer = self.pointer()
        if name == pointer.active:
            raise RuntimeError(f"slot {name} is active; it cannot be discarded")
        if name == pointer.previous:
            self._write_pointer(Pointer(pointer.active, None, pointer.pending))
        directory = self.root / name
        self._ensure_dirs()
        try:
            durable.remove(directory / SLOT_FILE)
            durable.remove(directory / MODEL_FILE)
            durable.remove_temps(directory)
            for stray in directory.iterdir():
                stray.unlink()  # nothing else belongs in a slot
            durable.fsync_dir(directory)
        except OSError as exc:
            raise SlotError(f"cannot clear slot {name} in {self.root}: {exc}") from None

    def sweep(self) -> list[Path]:
        """Remove what interrupted writes left: temp files, and any slot nothing points to.

        Raises:
            SlotError: the pointer is corrupt or a file cannot be removed.
        """
        pointer = self.pointer()
        removed: list[Path] = []
        try:
            removed += durable.remove_temps(self.root)
            for name in SLOT_NAMES:
                directory = self.root / name
                if name in (pointer.active, pointer.previous):
                    removed += durable.remove_temps(directory)
                elif directory.is_dir() and any(directory.iterdir()):
                    removed += list(directory.iterdir())
                    self.discard(name)
        except OSError as exc:
            raise SlotError(f"cannot clean {self.root}: {exc.strerror}") from None
        return removed

    @staticmethod
    def content_hash(path: Path) -> str:
        """The canonical content hash of the model file at `path` (mapped, not read whole).

        Raises:
            ModelFileInvalid: not a valid safetensors file.
            RuntimeError: there is no file at `path`.
            SlotError: it cannot be read.
        """
        try:
            with SafetensorsFile(path) as tensors:
                return model_hash(tensors)
        except FileNotFoundError:
            raise RuntimeError(f"no model was written to {path}") from None
        except PatchError as exc:
            raise ModelFileInvalid(f"the model file is not valid safetensors: {exc}") from None
        except OSError as exc:
            raise SlotError(f"cannot read {path}: {exc.strerror}") from None

    # -- internals -------------------------------------------------------------------------

    def _pointed(self, name: str | None) -> Slot | None:
        if name is None:
            return None
        slot = self.slot(name)
        if slot is None:
            raise SlotError(
                f"{self.root / POINTER_FILE} names slot {name}, which holds no committed model"
            )
        return slot

    def _check_size(self, slot: Slot) -> None:
        try:
            size = slot.model_path.stat().st_size
        except OSError as exc:
            raise SlotError(f"slot {slot.name}'s model is unreadable: {exc.strerror}") from None
        if size != slot.size:
            raise SlotError(
                f"slot {slot.name}'s model is {size} bytes, it was committed at {slot.size}"
            )

    def _write_pointer(self, pointer: Pointer) -> None:
        try:
            durable.write_json(self.root / POINTER_FILE, asdict(pointer))
        except OSError as exc:
            raise SlotError(f"cannot write {self.root / POINTER_FILE}: {exc.strerror}") from None

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SlotError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise SlotError(f"{path} is corrupt: {exc}") from None
        if not isinstance(data, dict):
            raise SlotError(f"{path} is corrupt: not a JSON object")
        return data

    def _ensure_dirs(self) -> None:
        try:
            for directory in (self.root, *(self.root / name for name in SLOT_NAMES)):
                if not directory.is_dir():
                    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                    durable.fsync_dir(directory.parent)
        except OSError as exc:
            raise SlotError(f"cannot create {self.root}: {exc.strerror}") from None


__all__ = [
    "MODELS_DIR",
    "MODEL_FILE",
    "POINTER_FILE",
    "SLOT_NAMES",
    "Pointer",
    "Slot",
    "SlotStore",
    "target_from_record",
]
