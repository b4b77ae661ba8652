"""`fedota delta diff|apply|info`: the happy path, the JSON figures, and every error path: one
line, exit status 2, and no output file nor temp file left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from delta_helpers import adam_like, assert_models_equal

from fedota.cli.main import main
from fedota.delta import Tensor, load, model_hash, save


@pytest.fixture
def models(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    old, new = adam_like(rng, (64, 32))
    base = {
        "w": old,
        "gone": Tensor("I8", (3,), np.array([1, 2, 3], np.int8)),
        "q": Tensor("I4", (3, 3), np.array([0x12, 0x34, 0x56, 0x78, 0x09], np.uint8)),
    }
    target = {
        "w": new,
        "bf": Tensor("BF16", (2,), np.array([0x3F80, 0x4000], np.uint16)),
        "q": Tensor("I4", (3, 3), np.array([0x12, 0x35, 0x56, 0x78, 0x09], np.uint8)),
    }
    base_path, target_path = tmp_path / "base.safetensors", tmp_path / "target.safetensors"
    save(base_path, base, metadata={"format": "pt"})
    save(target_path, target, metadata={"format": "pt"})
    return base_path, target_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["delta", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    assert err.startswith("fedota: error: ")
    assert err.count("\n") == 1, err
    assert fragment in err


def test_diff_apply_info(models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, target = models
    directory = base.parent
    patch, out = directory / "v2.patch", directory / "out.safetensors"
    code, stdout, err = run(capsys, "diff", base, target, "-o", patch)
    assert code == 0, err
    assert "lossless" in stdout and "patch" in stdout
    code, stdout, err = run(capsys, "apply", base, patch, "-o", out)
    assert code == 0, err
    assert_models_equal(load(out), load(target))
    assert model_hash(load(target)) in stdout
    code, stdout, err = run(capsys, "info", patch)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split() == ["TENSOR", "OP", "DTYPE", "SHAPE", "CODEC", "PAYLOAD", "RATIO"]
    assert any(line.split()[:3] == ["gone", "removed", "I8"] for line in lines)
    assert any(line.split()[:4] == ["w", "changed", "F32", "64x32"] for line in lines)


def test_diff_json_and_info_json_print_the_same_figures(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, target = models
    patch = base.parent / "v2.patch"
    code, stdout, err = run(
        capsys, "diff", base, target, "-o", patch, "--max-error", "fp16", "--json"
    )
    assert code == 0, err
    made = json.loads(stdout)
    assert made.pop("mode") == {"max_error": "fp16"}
    assert made.pop("output") == str(patch)
    code, stdout, err = run(capsys, "info", patch, "--json")
    assert code == 0, err
    shown = json.loads(stdout)
    assert made == shown
    assert shown["totals"]["patch_bytes"] == patch.stat().st_size
    assert {t["name"]: t["op"] for t in shown["tensors"]} == {
        "bf": "added",
        "gone": "removed",
        "q": "changed",
        "w": "changed",
    }


def test_emit_target_is_what_apply_produces(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, target = models
    directory = base.parent
    patch, exact, out = directory / "p", directory / "exact.safetensors", directory / "out"
    code, _, err = run(
        capsys, "diff", base, target, "-o", patch, "--max-error", "fp16", "--emit-target", exact
    )
    assert code == 0, err
    assert run(capsys, "apply", base, patch, "-o", out)[0] == 0
    assert model_hash(load(exact)) == model_hash(load(out))


def test_a_wrong_base_is_refused_and_nothing_is_written(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, target = models
    patch = base.parent / "v2.patch"
    assert run(capsys, "diff", base, target, "-o", patch)[0] == 0
    before = files(base.parent)
    code, _, err = run(capsys, "apply", target, patch, "-o", base.parent / "out.safetensors")
    assert_one_line_error(code, err, "wrong base model")
    assert files(base.parent) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:-7], "remain"),
        (lambda raw: raw[:40], "ends inside"),
        (lambda raw: raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:], "SHA-256"),
        (lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:], "index"),
        (lambda raw: b"not a patch at all" * 10, "not a fedota patch"),
    ],
    ids=["truncated", "cut in header", "tampered payload", "tampered index", "garbage"],
)
def test_a_bad_patch_is_refused_and_nothing_is_written(
    models: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    damage,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    base, target = models
    patch = base.parent / "v2.patch"
    assert run(capsys, "diff", base, target, "-o", patch)[0] == 0
    patch.write_bytes(damage(patch.read_bytes()))
    before = files(base.parent)
    code, _, err = run(capsys, "apply", base, patch, "-o", base.parent / "out.safetensors")
    assert_one_line_error(code, err, message)
    assert files(base.parent) == before
    if message != "SHA-256":  # info reads the index only
        code, _, err = run(capsys, "info", patch)
        assert_one_line_error(code, err, message)


def test_unreadable_and_malformed_inputs(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, target = models
    directory = base.parent
    missing, junk = directory / "missing.safetensors", directory / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    before = files(directory)
    for argv, fragment in [
        (("diff", missing, target, "-o", directory / "p"), "cannot read"),
        (("diff", base, junk, "-o", directory / "p"), "header"),
        (("apply", base, missing, "-o", directory / "o"), "cannot read"),
        (("apply", junk, base, "-o", directory / "o"), "not a fedota patch"),
        (("info", missing), "cannot read"),
        (("diff", base, target, "-o", base), "also an input"),
    ]:
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, fragment)
    assert files(directory) == before


@pytest.mark.parametrize("where", ["missing dir", "under a file"])
def test_unwritable_output(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str], where: str
) -> None:
    base, target = models
    directory = base.parent
    blocker = directory / "a-file"
    blocker.write_bytes(b"")
    parent = directory / "no" / "such" if where == "missing dir" else blocker
    assert run(capsys, "diff", base, target, "-o", directory / "p")[0] == 0
    before = files(directory)
    code, _, err = run(
        capsys,
        "diff",
        base,
        target,
        "-o",
        parent / "p",
        "--emit-target",
        directory / "exact.safetensors",
    )
    assert_one_line_error(code, err, "cannot write")
    code, _, err = run(capsys, "apply", base, directory / "p", "-o", parent / "out")
    assert_one_line_error(code, err, "cannot write")
    assert files(directory) == before


def test_the_installed_command_runs_end_to_end(models: tuple[Path, Path]) -> None:
    base, target = models
    patch = base.parent / "p"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedota",
            "delta",
            "diff",
            str(base),
            str(target),
            "-o",
            str(patch),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["patch_bytes"] == patch.stat().st_size
    assert done.stderr == ""  # no progress bar when stderr is not a terminal
