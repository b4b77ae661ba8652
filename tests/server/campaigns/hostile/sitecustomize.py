"""A hostile device's software, for tests: on this PYTHONPATH, fedota's ClientApp sends a NaN
update in odd rounds and an oversized one in even rounds (encoded as an honest payload)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

TARGET = "fedota.client.federation.client_app"
SUPPORT = str(Path(__file__).resolve().parent.parent)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            original(module)
            _poison(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _poison(module) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, SUPPORT)
    from memory_fleet import huge_update, nan_update

    honest = module.local_train

    def local_train(state_dir, content):  # type: ignore[no-untyped-def]
        reply = honest(state_dir, content)
        number = int(content.config_records["config"]["server-round"])
        return (nan_update if number % 2 else huge_update)(content, reply)

    module.local_train = local_train


sys.meta_path.insert(0, _Hook())
