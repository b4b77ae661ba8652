"""A benchmark script (benchmarks/NAME.py) loaded as a module, as the benchmark tests use it."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@contextlib.contextmanager
def benchmark_module(script: str) -> Iterator[ModuleType]:
    """benchmarks/`script` as a module; its folder is on sys.path while it is in use (the
    scripts import `_common` and their parts from beside them)."""
    sys.path.insert(0, str(BENCHMARKS))
    name = f"fedota_bench_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(BENCHMARKS))
