"""import-linter holds DESIGN.md's import direction, and would catch a wrong import."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "lint_imports.py"


def _lint_imports(source: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--source", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _copy_sources(target: Path) -> Path:
    shutil.copy2(REPO / "pyproject.toml", target / "pyproject.toml")
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    for folder in set(package_dirs["package-dir"].values()):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    return target


def test_the_contracts_hold() -> None:
    result = _lint_imports(REPO)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_client_module_importing_the_server_is_caught(tmp_path: Path) -> None:
    source = _copy_sources(tmp_path)
    victim = source / "client" / "__init__.py"
    victim.write_text(victim.read_text() + "\nimport fedota.server  # the mistake\n")
    # Fails on a staging that misses the mapped folders too ("Module 'fedota.server' does not
    # exist"), so passing also proves import-linter sees the parts, not an empty `fedota`.

    result = _lint_imports(source)

    assert result.returncode != 0
    assert "server and client are independent BROKEN" in result.stdout
    assert "the device never loads the coordinator's database layer BROKEN" in result.stdout
