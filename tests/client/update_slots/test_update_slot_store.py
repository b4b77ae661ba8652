"""SlotStore: only a committed, verified slot is ever pointed to; every change is atomic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from slot_models import Models, pointer_json

from fedota.client.update.apply_errors import (
    ContentMismatch,
    ModelFileInvalid,
    SlotError,
    SlotsBusy,
)
from fedota.client.update.slots import MODEL_FILE, Pointer, SlotStore

pytestmark = pytest.mark.timeout(60)


def _write_into_inactive(slots: SlotStore, source: Path) -> Path:
    out = slots.begin_install()
    shutil.copyfile(source, out)
    return out


def test_an_empty_state_directory_runs_nothing(state: Path) -> None:
    slots = SlotStore(state)
    assert slots.pointer() == Pointer()
    assert slots.active() is None and slots.previous() is None
    assert slots.inactive_name() == "a"


def test_commit_switch_confirm_points_at_the_verified_slot(state: Path, models: Models) -> None:
    slots = SlotStore(state)
    with slots.lock():
        _write_into_inactive(slots, models.v1.path)
        committed = slots.commit_install(models.v1.target)
        assert slots.active() is None  # committed is not switched
        switched = slots.switch()
        assert slots.pointer() == Pointer("a", None, pending=True)
        assert switched == committed and switched.name == "a"
        slots.confirm()
    assert slots.pointer() == Pointer("a", None, pending=False)
    active = slots.active()
    assert active is not None and active.target == models.v1.target
    assert active.size == models.v1.path.stat().st_size
    record = json.loads((state / "models" / "a" / "slot.json").read_text())
    assert record["target"]["content_sha256"] == models.v1.target.content_sha256
    assert slots.inactive_name() == "b"


def test_a_tampered_model_is_refused_and_nothing_is_committed(
    state_v1: Path, models: Models
) -> None:
    slots = SlotStore(state_v1)
    before = pointer_json(state_v1)
    with slots.lock():
        out = _write_into_inactive(slots, models.v2.path)
        data = bytearray(out.read_bytes())
        data[-3] ^= 0x40  # one bit of the last weight
        out.write_bytes(bytes(data))
        with pytest.raises(ContentMismatch) as caught:
            slots.commit_install(models.v2.target)
        assert caught.value.expected == models.v2.target.content_sha256
        assert slots.slot("b") is None
        with pytest.raises(RuntimeError, match="no committed model"):
            slots.switch()
    assert pointer_json(state_v1) == before


def test_a_file_that_is_not_safetensors_is_refused(state: Path, models: Models) -> None:
    slots = SlotStore(state)
    with slots.lock():
        slots.begin_install().write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
        with pytest.raises(ModelFileInvalid, match="not valid safetensors"):
            slots.commit_install(models.v1.target)
        assert slots.slot("a") is None


def test_the_previous_slot_is_unpointed_before_it_is_cleared(
    state_v1: Path, models: Models
) -> None:
    slots = SlotStore(state_v1)
    with slots.lock():
        _write_into_inactive(slots, models.v2.path)
        slots.commit_install(models.v2.target)
        slots.switch()
        slots.confirm()
        assert slots.pointer() == Pointer("b", "a", pending=False)
        out = slots.begin_install()  # for a v3: slot a, v1, goes
        assert slots.pointer() == Pointer("b", None, pending=False)
        assert out == state_v1 / "models" / "a" / MODEL_FILE
        assert list(out.parent.iterdir()) == []


def test_rollback_returns_to_the_previous_slot_and_discards_the_failed_one(
    state_v1: Path, models: Models
) -> None:
    slots = SlotStore(state_v1)
    with slots.lock():
        _write_into_inactive(slots, models.v2.path)
        slots.commit_install(models.v2.target)
        slots.switch()
        back = slots.rollback()
    assert back is not None and back.target == models.v1.target
    assert slots.pointer() == Pointer("a", None, pending=False)
    assert list((state_v1 / "models" / "b").iterdir()) == []
    with slots.lock(), pytest.raises(RuntimeError, match="no previous model"):
        slots.rollback()


def test_a_failed_first_install_rolls_back_to_no_model(state: Path, models: Models) -> None:
    slots = SlotStore(state)
    with slots.lock():
        _write_into_inactive(slots, models.v1.path)
        slots.commit_install(models.v1.target)
        slots.switch()
        assert slots.rollback() is None
    assert slots.pointer() == Pointer()
    assert slots.active() is None


def test_misuse_is_refused(state_v1: Path, models: Models) -> None:
    slots = SlotStore(state_v1)
    with slots.lock():
        with pytest.raises(RuntimeError, match="no switch is waiting"):
            slots.confirm()
        with pytest.raises(RuntimeError, match="is active"):
            slots.discard("a")
        _write_into_inactive(slots, models.v2.path)
        slots.commit_install(models.v2.target)
        slots.switch()
        with pytest.raises(RuntimeError, match="waiting for its health check"):
            slots.begin_install()
        with pytest.raises(RuntimeError, match="already waiting"):
            slots.switch()


def test_a_slot_whose_file_changed_size_is_not_switched_to(state: Path, models: Models) -> None:
    slots = SlotStore(state)
    with slots.lock():
        out = _write_into_inactive(slots, models.v1.path)
        slots.commit_install(models.v1.target)
        with open(out, "ab") as handle:
            handle.write(b"\0")
        with pytest.raises(SlotError, match="committed at"):
            slots.switch()
    assert slots.pointer() == Pointer()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is corrupt"),
        ('{"active": "c", "previous": null, "pending": false}', "slot names"),
        ('{"active": null, "previous": null, "pending": true}', "pending"),
        ('{"active": null, "previous": "a", "pending": false}', "needs an active one"),
        ('{"active": "a", "previous": "a", "pending": false}', "must differ"),
        ('{"active": "b", "previous": null, "pending": false}', "holds no committed model"),
    ],
    ids=[
        "not-json",
        "unknown-slot",
        "pending-nothing",
        "previous-only",
        "previous-is-active",
        "uncommitted-slot",
    ],
)
def test_a_corrupt_pointer_is_refused(state_v1: Path, content: str, message: str) -> None:
    (state_v1 / "models" / "active.json").write_text(content)
    with pytest.raises(SlotError, match=message):
        SlotStore(state_v1).active()


def test_a_second_process_cannot_take_the_slots(state: Path) -> None:
    slots = SlotStore(state)
    with slots.lock(), pytest.raises(SlotsBusy, match="second daemon"), SlotStore(state).lock():
        pass
    with SlotStore(state).lock():
        pass  # released with the first


def test_sweep_removes_temp_files_and_unreferenced_slots(state_v1: Path) -> None:
    models_dir = state_v1 / "models"
    strays = [
        models_dir / ".active.json.x1.tmp",
        models_dir / "a" / ".model.safetensors.x2.tmp",
        models_dir / "b" / ".model.safetensors.x3.tmp",
        models_dir / "b" / MODEL_FILE,
    ]
    for stray in strays:
        stray.write_bytes(b"half")
    slots = SlotStore(state_v1)
    with slots.lock():
        removed = slots.sweep()
    assert sorted(removed) == sorted(strays)
    assert not any(stray.exists() for stray in strays)
    assert slots.active() is not None and (models_dir / "a" / MODEL_FILE).exists()
