"""Run import-linter on fedota's import contracts: `python .ci/lint_imports.py [--source DIR]`.

import-linter (grimp) finds a package's modules by walking the folder its root package imports
from. fedota's parts live in top-level folders that setuptools' `package-dir` maps under `fedota.*`
(server/ installs as fedota.server), so the walk from fedota/ sees none of them. This script stages
the source files in the installed layout (fedota/server/..., read from pyproject's mapping) in a
temporary folder and runs `lint-imports` there with the contracts from pyproject.toml.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def package_dirs(pyproject: Path) -> dict[str, str]:
    """The `[tool.setuptools] package-dir` mapping (import name -> folder); top-level names only."""
    config = tomllib.loads(pyproject.read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return mapping


def stage(source: Path, target: Path) -> None:
    """Copy every mapped folder's .py files from source into target in the installed layout."""
    for name, folder in sorted(package_dirs(source / "pyproject.toml").items()):
        destination = target.joinpath(*name.split("."))
        shutil.copytree(
            source / folder,
            destination,
            dirs_exist_ok=True,
            ignore=_not_python,
        )


def _not_python(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if not (n.endswith(".py") or Path(folder, n).is_dir())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO, help="repository root to check")
    args = parser.parse_args(argv)
    source: Path = args.source.resolve()
    lint_imports = Path(sys.executable).parent / "lint-imports"
    with tempfile.TemporaryDirectory(prefix="fedota-lint-imports-") as tmp:
        stage(source, Path(tmp))
        # import-linter puts its working directory first on sys.path, so the staged `fedota`
        # wins over the editable install's finder.
        env = {**os.environ, "PYTHONPATH": tmp}
        command = [str(lint_imports), "--no-cache", "--no-logo", str(source / "pyproject.toml")]
        return subprocess.run(command, cwd=tmp, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
