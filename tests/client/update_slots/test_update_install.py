"""install(): full artifacts and patches land in the inactive slot, verified, and are switched to
only when healthy; every refusal leaves the device running what it ran, untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from slot_models import Models, assert_runs, snapshot, temp_files

from fedota.client.update.apply_errors import (
    ContentMismatch,
    HealthCheckFailed,
    ModelFileInvalid,
    PatchRejected,
    SlotError,
    WrongBase,
)
from fedota.client.update.install import (
    StatusReport,
    Step,
    Update,
    UpdateStatus,
    install,
    recover,
)
from fedota.client.update.journal import Journal, write_journal
from fedota.client.update.slots import Pointer, SlotStore
from fedota.delta import read_header

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """Collects what install reports, as the daemon's callbacks would."""

    def __init__(self) -> None:
        self.reports: list[StatusReport] = []
        self.steps: list[Step] = []

    def status(self, report: StatusReport) -> None:
        self.reports.append(report)

    def step(self, step: Step) -> None:
        if not self.steps or self.steps[-1] != step:
            self.steps.append(step)

    @property
    def statuses(self) -> list[str]:
        return [report.status.value for report in self.reports]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _install(state: Path, update: Update, recorder: Recorder) -> object:
    return install(state, update, on_status=recorder.status, on_step=recorder.step)


def test_a_full_artifact_becomes_the_first_model(
    state: Path, models: Models, recorder: Recorder
) -> None:
    result = _install(state, Update(models.v1.target, models.v1.path), recorder)
    assert result.status is UpdateStatus.HEALTHY
    assert_runs(state, models.v1)
    assert recorder.statuses == ["applying", "health_checking", "healthy"]
    # The new model is reported as served only once healthy.
    assert [r.content_sha256 for r in recorder.reports] == ["", "", models.v1.target.content_sha256]
    assert recorder.steps == [
        Step.JOURNALED,
        Step.WRITING,
        Step.COMMITTED,
        Step.SWITCHED,
        Step.CHECKING,
        Step.CONFIRMED,
    ]


def test_a_patch_from_the_active_model_installs_the_target(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    result = _install(state_v1, update, recorder)
    assert result.status is UpdateStatus.HEALTHY, result.reason
    assert result.active is not None and result.active.name == "b"
    assert_runs(state_v1, models.v2)
    previous = SlotStore(state_v1).previous()
    assert previous is not None and previous.target == models.v1.target
    v1, v2 = models.v1.target.content_sha256, models.v2.target.content_sha256
    assert [(r.status.value, r.content_sha256) for r in recorder.reports] == [
        ("applying", v1),
        ("health_checking", v1),
        ("healthy", v2),
    ]


def _assert_refused_untouched(
    state: Path, before: dict[str, bytes], recorder: Recorder, result: object, error: type
) -> None:
    assert result.status is UpdateStatus.FAILED
    assert isinstance(result.error, error)
    assert recorder.reports[-1].status is UpdateStatus.FAILED
    assert recorder.reports[-1].reason == result.reason == str(result.error)
    assert snapshot(state) == before  # pointer, slots, everything byte for byte
    assert temp_files(state) == []


def test_a_patch_for_another_base_is_refused_before_anything_is_written(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    before = snapshot(state_v1)
    update = Update(models.v2.target, models.patch, models.v2.target.content_sha256)
    result = _install(state_v1, update, recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, WrongBase)
    assert "the device runs" in result.reason
    assert Step.JOURNALED not in recorder.steps


def test_a_patch_whose_header_disagrees_with_its_signed_target_is_refused(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    before = snapshot(state_v1)
    # The v1->bad patch, offered as the signed v1->v2 patch (mix-and-match of targets).
    update = Update(models.v2.target, models.bad_patch, models.v1.target.content_sha256)
    result = _install(state_v1, update, recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, PatchRejected)
    assert "header names target" in result.reason


def test_a_tampered_patch_payload_is_refused_and_the_slot_discarded(
    state_v1: Path, models: Models, recorder: Recorder, tmp_path: Path
) -> None:
    data = bytearray(models.patch.read_bytes())
    with open(models.patch, "rb") as handle:
        payload_start = len(read_header(handle, len(data)).index_bytes())
    data[payload_start + 5] ^= 0xFF
    tampered = tmp_path / "tampered.patch"
    tampered.write_bytes(bytes(data))
    before = snapshot(state_v1)
    update = Update(models.v2.target, tampered, models.v1.target.content_sha256)
    result = _install(state_v1, update, recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, PatchRejected)
    assert "does not match its SHA-256" in result.reason


def test_a_full_artifact_that_is_not_the_signed_model_is_refused(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    before = snapshot(state_v1)
    result = _install(state_v1, Update(models.v2.target, models.bad.path), recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, ContentMismatch)
    assert recorder.statuses == ["applying", "failed"]


def test_a_garbage_artifact_is_refused(
    state_v1: Path, models: Models, recorder: Recorder, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\0" * 100)
    before = snapshot(state_v1)
    result = _install(state_v1, Update(models.v2.target, garbage), recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, ModelFileInvalid)


def test_a_model_that_fails_its_health_check_is_rolled_back(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    update = Update(models.bad.target, models.bad_patch, models.v1.target.content_sha256)
    result = _install(state_v1, update, recorder)
    assert result.status is UpdateStatus.ROLLED_BACK
    assert isinstance(result.error, HealthCheckFailed)
    assert "NaN" in result.reason
    assert recorder.statuses == ["applying", "health_checking", "rolled_back"]
    assert {r.content_sha256 for r in recorder.reports} == {models.v1.target.content_sha256}
    assert recorder.steps[-3:] == [Step.CHECKING, Step.ROLLING_BACK, Step.ROLLED_BACK]
    assert_runs(state_v1, models.v1)
    assert list((state_v1 / "models" / "b").iterdir()) == []  # the failed model is gone


def test_a_failed_first_model_leaves_the_device_without_one(
    state: Path, models: Models, recorder: Recorder
) -> None:
    result = _install(state, Update(models.bad.target, models.bad.path), recorder)
    assert result.status is UpdateStatus.ROLLED_BACK
    assert result.active is None
    assert_runs(state, None)


def test_a_custom_health_check_decides(state_v1: Path, models: Models, recorder: Recorder) -> None:
    def refuse(slot: object) -> None:
        raise HealthCheckFailed("the probe answered 3, expected 7")

    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    result = install(state_v1, update, health=refuse, on_status=recorder.status)
    assert result.status is UpdateStatus.ROLLED_BACK
    assert recorder.reports[-1].reason == "the probe answered 3, expected 7"
    assert_runs(state_v1, models.v1)


def test_going_back_to_the_previous_version_reuses_its_slot(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    assert install(state_v1, update).status is UpdateStatus.HEALTHY
    # Back to v1 (e.g. `rollouts rollback`): slot a still holds it; nothing is written.
    result = _install(state_v1, Update(models.v1.target, models.v1.path), recorder)
    assert result.status is UpdateStatus.HEALTHY
    assert Step.WRITING not in recorder.steps
    assert_runs(state_v1, models.v1)
    assert SlotStore(state_v1).pointer() == Pointer("a", "b", pending=False)


def test_a_damaged_previous_slot_is_written_afresh(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    assert install(state_v1, update).status is UpdateStatus.HEALTHY
    shutil.copyfile(models.bad.path, state_v1 / "models" / "a" / "model.safetensors")
    result = _install(state_v1, Update(models.v1.target, models.v1.path), recorder)
    assert result.status is UpdateStatus.HEALTHY
    assert Step.WRITING in recorder.steps
    assert_runs(state_v1, models.v1)


def test_the_running_model_is_not_installed_again(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    before = snapshot(state_v1)
    result = _install(state_v1, Update(models.v1.target, models.v1.path), recorder)
    assert result.status is UpdateStatus.HEALTHY
    assert recorder.statuses == ["applying", "healthy"]
    assert snapshot(state_v1) == before


def test_an_install_waits_for_recovery_of_an_interrupted_one(
    state_v1: Path, models: Models
) -> None:
    write_journal(SlotStore(state_v1), Journal("b", models.v2.target))
    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    with pytest.raises(RuntimeError, match="awaits recover"):
        install(state_v1, update)


def test_recovery_with_nothing_interrupted_does_nothing(state_v1: Path) -> None:
    before = snapshot(state_v1)
    assert recover(state_v1) is None
    assert snapshot(state_v1) == before


@pytest.mark.parametrize("patch", [True, False], ids=["patch", "full"])
def test_a_missing_download_fails_without_touching_the_slots(
    patch: bool, state_v1: Path, models: Models, recorder: Recorder, tmp_path: Path
) -> None:
    before = snapshot(state_v1)
    base = models.v1.target.content_sha256 if patch else None
    update = Update(models.v2.target, tmp_path / "gone", base)
    result = _install(state_v1, update, recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, SlotError)
    assert "cannot" in result.reason and "gone" in result.reason


def test_a_patch_onto_a_damaged_active_model_fails_and_says_so(
    state_v1: Path, models: Models, recorder: Recorder
) -> None:
    model = state_v1 / "models" / "a" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01  # bit rot in the running model, after it was verified
    model.write_bytes(bytes(data))
    before = snapshot(state_v1)
    update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
    result = _install(state_v1, update, recorder)
    _assert_refused_untouched(state_v1, before, recorder, result, SlotError)
    assert "no longer matches its verified content" in result.reason
