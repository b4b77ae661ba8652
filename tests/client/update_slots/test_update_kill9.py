"""kill -9 at every step of an install, then `recover` on the next start: the device runs the old
or the new verified model, never a broken one, and nothing half-written is left behind.

Each install runs in a real process (install_runner.py) that pauses at one step; the test checks
the state directory really is at that step, sends SIGKILL, and recovers in this process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from slot_models import Models, Release, assert_runs, temp_files

from fedota.client.update.install import (
    StatusReport,
    Step,
    Update,
    UpdateStatus,
    install,
    recover,
)
from fedota.client.update.slots import Pointer, SlotStore

pytestmark = pytest.mark.timeout(120)
RUNNER = Path(__file__).with_name("install_runner.py")
PAUSE_TIMEOUT = 60.0


@contextmanager
def paused(argv: list[str], marker: Path) -> Iterator[None]:
    """Start the runner, wait until it pauses (yield: inspect the state), then SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, str(RUNNER), *argv, "--marker", str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + PAUSE_TIMEOUT
        while not marker.exists():
            if process.poll() is not None:
                out, err = process.communicate()
                pytest.fail(f"the runner ended ({process.returncode}) without pausing: {out}{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"the runner did not pause within {PAUSE_TIMEOUT} s")
            time.sleep(0.02)
        yield
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _install_argv(state: Path, release: Release, file: Path, base: str | None) -> list[str]:
    argv = ["install", str(state), "--target", json.dumps(asdict(release.target))]
    argv += ["--file", str(file)]
    return argv + (["--base", base] if base is not None else [])


def _at_step(state: Path, step: Step, models: Models) -> None:
    """What the state directory holds while the install is paused at `step`."""
    slots = SlotStore(state)
    pointer = slots.pointer()
    journal = slots.root / "update.json"
    if step is Step.WRITING:
        # Mid-write: a partial model in a temp file, nothing committed, nothing switched.
        assert [path.parent.name for path in temp_files(state)] == ["b"]
        assert slots.slot("b") is None and pointer.active == "a"
    elif step is Step.COMMITTED:
        assert slots.slot("b") is not None and pointer == Pointer("a", None, pending=False)
    elif step in (Step.SWITCHED, Step.CHECKING, Step.ROLLING_BACK):
        assert pointer == Pointer("b", "a", pending=True)
    elif step is Step.CONFIRMED:
        assert pointer == Pointer("b", "a", pending=False) and journal.exists()
    elif step is Step.ROLLED_BACK:
        assert pointer == Pointer("a", None, pending=False) and journal.exists()


CASES = [
    # (step, installs bad model?, full artifact?, status after recovery)
    (Step.JOURNALED, False, False, UpdateStatus.FAILED),
    (Step.WRITING, False, False, UpdateStatus.FAILED),
    (Step.WRITING, False, True, UpdateStatus.FAILED),
    (Step.COMMITTED, False, False, UpdateStatus.FAILED),
    (Step.SWITCHED, False, False, UpdateStatus.HEALTHY),
    (Step.CHECKING, False, False, UpdateStatus.HEALTHY),
    (Step.CONFIRMED, False, False, UpdateStatus.HEALTHY),
    (Step.SWITCHED, True, False, UpdateStatus.ROLLED_BACK),
    (Step.ROLLING_BACK, True, False, UpdateStatus.ROLLED_BACK),
    (Step.ROLLED_BACK, True, False, UpdateStatus.ROLLED_BACK),
]


@pytest.mark.parametrize(
    ("step", "bad", "full", "outcome"),
    CASES,
    ids=[f"{s.value}-{'bad' if b else 'v2'}-{'full' if f else 'patch'}" for s, b, f, _ in CASES],
)
def test_kill_at_a_step_then_recover(
    step: Step,
    bad: bool,
    full: bool,
    outcome: UpdateStatus,
    state_v1: Path,
    models: Models,
    tmp_path: Path,
) -> None:
    release = models.bad if bad else models.v2
    if full:
        argv = _install_argv(state_v1, release, release.path, None)
    else:
        patch = models.bad_patch if bad else models.patch
        argv = _install_argv(state_v1, release, patch, models.v1.target.content_sha256)
    with paused([*argv, "--pause-at", step.value], tmp_path / "paused"):
        _at_step(state_v1, step, models)

    reports: list[StatusReport] = []
    result = recover(state_v1, on_status=reports.append)
    assert result is not None and result.status is outcome, result
    assert reports[-1].status is outcome
    runs = models.v2 if outcome is UpdateStatus.HEALTHY else models.v1
    assert reports[-1].content_sha256 == runs.target.content_sha256
    assert_runs(state_v1, runs)
    assert recover(state_v1) is None  # settled: a second start has nothing to do
    if outcome is UpdateStatus.FAILED:
        # Nothing is wedged: the same update installs on the next try.
        update = Update(models.v2.target, models.patch, models.v1.target.content_sha256)
        assert install(state_v1, update).status is UpdateStatus.HEALTHY
        assert_runs(state_v1, models.v2)


def test_kill_after_the_first_switch_of_a_new_device(
    state: Path, models: Models, tmp_path: Path
) -> None:
    argv = _install_argv(state, models.v1, models.v1.path, None)
    with paused([*argv, "--pause-at", Step.SWITCHED.value], tmp_path / "paused"):
        assert SlotStore(state).pointer() == Pointer("a", None, pending=True)
    result = recover(state)
    assert result is not None and result.status is UpdateStatus.HEALTHY
    assert_runs(state, models.v1)


def test_a_health_check_killed_twice_is_rolled_back_without_a_third(
    state_v1: Path, models: Models, tmp_path: Path
) -> None:
    argv = _install_argv(state_v1, models.v2, models.patch, models.v1.target.content_sha256)
    with paused([*argv, "--pause-at", Step.CHECKING.value], tmp_path / "first"):
        pass
    recover_argv = ["recover", str(state_v1), "--pause-at", Step.CHECKING.value]
    with paused(recover_argv, tmp_path / "second"):
        pass

    def never(slot: object) -> None:
        raise AssertionError("a third health check ran")

    result = recover(state_v1, health=never)
    assert result is not None and result.status is UpdateStatus.ROLLED_BACK
    assert "interrupted 2 times" in result.reason
    assert_runs(state_v1, models.v1)
