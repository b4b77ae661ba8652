"""The committed generated code is exactly what the generator makes from the .proto sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "protos" / "v1"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_generated_code_matches_the_sources(tmp_path: Path) -> None:
    fresh = tmp_path / "v1"
    subprocess.run(
        [sys.executable, "-m", "fedota.protos._generate", "--out", str(fresh)],
        check=True,
        capture_output=True,
        timeout=120,
    )

    generated, committed = _files(fresh), _files(COMMITTED)
    assert sorted(generated) == sorted(committed), (
        "protos/v1 holds other files than the generator makes: run `make protos`"
    )
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"protos/v1 differs from the .proto sources in {stale}: run `make protos`"
