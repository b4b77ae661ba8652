"""Bad-input cases of the rollout RPCs of the Admin service, run by test_bad_input.py.

The world there has no release, so a well-formed release is NOT_FOUND; the policy's own rules
(stages, thresholds) are checked before any lookup.
"""

from __future__ import annotations

from typing import Any

import grpc

from fedota.protos.v1 import releases_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TRUNCATED = b"\x0a\x05ab"
BAD_UTF8 = b"\x0a\x02\xff\xfe"
MOVES = ("PauseRollout", "ResumeRollout", "AbortRollout", "RollbackRollout")


def _create(**fields: Any) -> pb.CreateRolloutRequest:
    base: dict[str, Any] = {"release": "digits@v1", "cohort": "default", "stage_percents": [100]}
    return pb.CreateRolloutRequest(**{**base, **fields})


ROLLOUT_CASES: list[tuple[str, str, Any, grpc.StatusCode, str]] = [
    ("Admin", "CreateRollout", lambda w: _create(release=""), INVALID, "release: is required"),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(stage_percents=[]),
        INVALID,
        "stages: at least one stage is required",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(stage_percents=[10, 5, 100]),
        INVALID,
        "stage 2 (5%) must be above stage 1 (10%)",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(stage_percents=[1, 50]),
        INVALID,
        "stages: the last stage must be 100% (got 50%)",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(stage_percents=[float("nan"), 100]),
        INVALID,
        "stages: stage 1 is nan%",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(stage_percents=[float(n) for n in range(1, 23)] + [100]),
        INVALID,
        "stages: at most 20 stages",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(success_threshold_percent=101),
        INVALID,
        "success_threshold: must be above 0% and at most 100% (got 101%)",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(success_threshold_percent=-5),
        INVALID,
        "success_threshold: must be above 0%",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(max_failure_percent=100),
        INVALID,
        "max_failure: must be at least 0% and below 100% (got 100%)",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(max_failure_percent=float("inf")),
        INVALID,
        "max_failure: must be at least 0%",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(zero_failure_tolerance=True, max_failure_percent=3),
        INVALID,
        "max_failure: zero_failure_tolerance contradicts a max failure of 3%",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(cohort="Bad Cohort"),
        INVALID,
        "cohort:",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(release="digits@vx"),
        INVALID,
        "digits@vx",
    ),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(release="rel_0123abcd"),
        NOT_FOUND,
        "release rel_0123abcd does not exist",
    ),
    ("Admin", "CreateRollout", lambda w: _create(), NOT_FOUND, "digits"),
    (
        "Admin",
        "CreateRollout",
        lambda w: _create(release="r" * 81),
        INVALID,
        "release: must be at most 80 characters",
    ),
    ("Admin", "CreateRollout", lambda w: BAD_UTF8, INVALID, "CreateRolloutRequest"),
    ("Admin", "ListRollouts", lambda w: TRUNCATED, INVALID, "ListRolloutsRequest"),
    ("Admin", "GetRollout", lambda w: pb.RolloutRef(), INVALID, "id: is required"),
    (
        "Admin",
        "GetRollout",
        lambda w: pb.RolloutRef(id="rollout-1"),
        INVALID,
        "id: 'rollout-1' is not a rollout id of the form rol_<hex>",
    ),
    (
        "Admin",
        "GetRollout",
        lambda w: pb.RolloutRef(id="rol_00ff"),
        NOT_FOUND,
        "rollout rol_00ff does not exist",
    ),
    ("Admin", "GetRollout", lambda w: TRUNCATED, INVALID, "RolloutRef"),
]

for _move in MOVES:
    ROLLOUT_CASES += [
        ("Admin", _move, lambda w: pb.RolloutRef(), INVALID, "id: is required"),
        (
            "Admin",
            _move,
            lambda w: pb.RolloutRef(id="rol_xyz"),
            INVALID,
            "id: 'rol_xyz' is not a rollout id",
        ),
        (
            "Admin",
            _move,
            lambda w: pb.RolloutRef(id="rol_00ff", reason="r" * 501),
            INVALID,
            "reason: must be at most 500 characters",
        ),
        (
            "Admin",
            _move,
            lambda w: pb.RolloutRef(id="rol_00ff", reason="a\x00b"),
            INVALID,
            "reason: must not contain control characters",
        ),
        (
            "Admin",
            _move,
            lambda w: pb.RolloutRef(id="rol_00ff"),
            NOT_FOUND,
            "rollout rol_00ff does not exist",
        ),
        ("Admin", _move, lambda w: BAD_UTF8, INVALID, "RolloutRef"),
    ]
