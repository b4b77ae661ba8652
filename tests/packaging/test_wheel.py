"""The wheel: only `fedota` at the top level, every source file shipped, importable on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
# Everything a part needs at run time; a new kind of data file joins this list deliberately.
SHIPPED_SUFFIXES = {".py", ".pyi", ".proto", ".mako", ".typed"}
MODULES = [
    "fedota",
    "fedota.cli.main",
    "fedota.protos.v1.fleet_pb2",
    "fedota.protos.v1.admin_pb2_grpc",
    "fedota.storage",
    "fedota.server",
    "fedota.client",
    "fedota.delta",
    "fedota.ml",
]


def _source_copy(target: Path) -> Path:
    """The files a build reads, copied so that building writes nothing into the work tree."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, target / name)
    for folder in sorted(set(PACKAGE_DIRS.values())):
        shutil.copytree(
            REPO / folder,
            target / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
        )
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _source_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("fedota-*.whl")
    return built


def _expected_files() -> set[str]:
    """Each mapped folder's shipped files, named as the wheel names them (server/x.py is
    fedota/server/x.py)."""
    expected = set()
    for package, folder in PACKAGE_DIRS.items():
        for path in (REPO / folder).rglob("*"):
            relative = path.relative_to(REPO / folder)
            if path.suffix in SHIPPED_SUFFIXES and "__pycache__" not in relative.parts:
                expected.add(f"{package.replace('.', '/')}/{relative.as_posix()}")
    return expected


def test_only_fedota_is_top_level(wheel: Path) -> None:
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}

    (metadata,) = top - {"fedota"}
    assert metadata.endswith(".dist-info"), top


def test_every_source_file_ships(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    missing = sorted(_expected_files() - names)
    assert not missing, f"not in the wheel (is its package listed in pyproject?): {missing}"


def test_protos_and_migrations_ship(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    protos = {p.name for p in (REPO / "protos/fedota/v1").glob("*.proto")}
    assert protos >= {"fleet.proto", "admin.proto", "device.proto"}
    assert {f"fedota/protos/fedota/v1/{p}" for p in protos} <= names
    migrations = REPO / "storage/migrations"
    if not (migrations / "script.py.mako").exists():
        pytest.skip("storage/migrations/script.py.mako is not written yet")
    shipped = {n for n in names if n.startswith("fedota/storage/migrations/")}
    assert "fedota/storage/migrations/script.py.mako" in shipped
    assert any(n.startswith("fedota/storage/migrations/versions/") for n in shipped)


def test_the_installed_wheel_imports_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", target, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import importlib, json, sys\n"
        f"names = {MODULES!r}\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))\n"
    )
    # An empty working directory, so that neither '' on sys.path nor the editable install's
    # finder (which comes after PYTHONPATH) can supply fedota from the source tree.
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=workdir,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)
    outside = {name: path for name, path in files.items() if not Path(path).is_relative_to(target)}
    assert not outside, f"imported from outside the installed wheel: {outside}"
