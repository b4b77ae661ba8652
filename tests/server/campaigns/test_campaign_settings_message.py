"""A StartCampaignRequest's settings become the spec the campaign runs: the update norm bound
reaches the server's validation and the secure-aggregation clip, and shows in the view."""

from __future__ import annotations

import numpy as np
import pytest

from fedota.protos.v1 import campaigns_pb2
from fedota.server.aggregation.validation import ModelSpec
from fedota.server.campaigns.messages import request_spec
from fedota.server.campaigns.spec import DEFAULT_SECURE_BOUND
from fedota.server.errors import InvalidArgument

MODEL = ModelSpec.of({"w": np.zeros((4, 3), dtype=np.float32)})


def _settings(**fields: object) -> campaigns_pb2.CampaignSettings:
    return campaigns_pb2.CampaignSettings(
        **{"rounds": 1, "clients_per_round": 3, "min_clients": 2} | fields  # type: ignore[arg-type]
    )


def test_the_update_norm_bound_is_validation_and_the_secure_clip() -> None:
    spec = request_spec(_settings(max_update_norm=3.5, secure_aggregation=True), None)
    assert spec.settings.update_limits(MODEL).max_norm == 3.5
    assert spec.secure_bound(MODEL) == 3.5


def test_without_a_bound_only_secure_aggregation_sets_one() -> None:
    assert request_spec(_settings(), None).settings.update_limits(MODEL).max_norm is None
    secure = request_spec(_settings(secure_aggregation=True), None)
    assert secure.secure_bound(MODEL) == DEFAULT_SECURE_BOUND


def test_with_dp_the_bound_is_at_least_what_its_noise_implies() -> None:
    spec = request_spec(_settings(dp_clip=1.0, dp_noise=0.5, max_update_norm=0.1), None)
    assert spec.settings.update_limits(MODEL).max_norm > 1.0  # the honest noisy-norm bound


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_bad_bound_names_the_option(bad: float) -> None:
    with pytest.raises(InvalidArgument, match="max_update_norm"):
        request_spec(_settings(max_update_norm=bad), None)
