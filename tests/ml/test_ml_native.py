"""The native-library builder: cached builds, and a clean torch fall-back when it cannot build."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from native_marks import needs_compiler

from fedota.ml.quant import native

SOURCE = "int fedota_test_answer(void) { return 42; }\n"


def _declare(lib: ctypes.CDLL) -> None:
    lib.fedota_test_answer.restype = ctypes.c_int


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # Each test gets its own process-level table and cache directory.
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setattr(native, "_status", {})
    monkeypatch.setenv("FEDOTA_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("FEDOTA_NATIVE", raising=False)
    return tmp_path


@needs_compiler
def test_a_library_is_built_once_and_reused(fresh: Path) -> None:
    lib = native.load_library("probe", SOURCE, _declare)
    assert lib is not None and lib.fedota_test_answer() == 42
    assert native.native_status()["probe"] == "native"
    built = sorted(fresh.glob("probe-*.so"))
    assert len(built) == 1
    assert native.load_library("probe", SOURCE, _declare) is lib
    native._libraries.clear()  # a new process finds the cached build
    assert native.load_library("probe", SOURCE, _declare) is not None
    assert sorted(fresh.glob("probe-*.so")) == built
    assert not [p for p in fresh.iterdir() if p.is_dir()]  # no build directory left behind


@pytest.mark.parametrize(
    ("env", "value", "reason"),
    [
        ("FEDOTA_NATIVE", "0", "FEDOTA_NATIVE=0"),
        ("CC", "/nonexistent/cc", "No such file"),
        ("CC", "false", "failed"),
    ],
)
def test_without_a_build_callers_get_none_and_a_reason(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(env, value)
    assert native.load_library("probe", SOURCE, _declare) is None
    status = native.native_status()["probe"]
    assert status.startswith("torch fall-back") and reason in status
    assert not list(fresh.glob("*.so"))


@needs_compiler
def test_a_library_missing_a_symbol_is_refused(fresh: Path) -> None:
    def declare(lib: ctypes.CDLL) -> None:
        lib.fedota_not_there.restype = None

    assert native.load_library("probe", SOURCE, declare) is None
    assert "fedota_not_there" in native.native_status()["probe"]


def test_a_compile_error_is_reported(fresh: Path) -> None:
    assert native.load_library("broken", "this is not C", _declare) is None
    assert "failed" in native.native_status()["broken"]
