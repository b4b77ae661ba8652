"""A mark for the tests that assert the C kernels were built (fedota.ml.quant.native)."""

from __future__ import annotations

import os
import shutil

import pytest

# Where there is no C compiler (or FEDOTA_NATIVE=0) every path runs on torch; the tests that
# assert the kernels were built then skip, and the rest check the fall-backs.
needs_compiler = pytest.mark.skipif(
    os.environ.get("FEDOTA_NATIVE") == "0"
    or not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")),
    reason="no C compiler or FEDOTA_NATIVE=0: the torch fall-backs run instead",
)
