"""Fixtures for the fedota.ml tests: a byte LM trained once per session, its quantized forms.

The C kernels build into a per-session cache directory (FEDOTA_KERNEL_CACHE), so tests never
write to the user's cache and always exercise a fresh build.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from fedota.ml.lm import ByteLM, LMConfig, generate_corpus, train_lm

TINY = LMConfig(d_model=64, n_layers=2, n_heads=4, d_ff=256, max_seq_len=128)


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("FEDOTA_KERNEL_CACHE")
    os.environ["FEDOTA_KERNEL_CACHE"] = str(tmp_path_factory.mktemp("kernels"))
    yield
    if previous is None:
        os.environ.pop("FEDOTA_KERNEL_CACHE", None)
    else:
        os.environ["FEDOTA_KERNEL_CACHE"] = previous


@pytest.fixture(scope="session")
def corpus() -> bytes:
    return generate_corpus(2000, seed=0)


@pytest.fixture(scope="session")
def held_out() -> bytes:
    return generate_corpus(200, seed=1)


@pytest.fixture(scope="session")
def trained_lm(corpus: bytes) -> ByteLM:
    """A 2-layer byte LM trained from scratch (~3 s on one core)."""
    torch.manual_seed(0)
    model = ByteLM(TINY)
    train_lm(model, corpus, steps=200, batch_size=16, seq_len=48, lr=5e-3)
    return model.eval()


@pytest.fixture
def random_lm() -> ByteLM:
    torch.manual_seed(1)
    return ByteLM(TINY).eval()
