"""Bad-input cases of the registry RPCs (models, releases, keys), run by test_bad_input.py.

A case's payload is a message, raw bytes, or (for the ImportModel client stream) a list of
messages or raw byte strings sent one after another.
"""

from __future__ import annotations

from typing import Any

import grpc

from fedota.protos.v1 import releases_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TRUNCATED = b"\x0a\x05ab"
CHECKPOINT_LIKE = b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + b"\x00" * 8


def _header(size: int, family: str = "digits", **fields: Any) -> pb.ImportModelChunk:
    return pb.ImportModelChunk(
        header=pb.ImportModelHeader(family=family, size_bytes=size, **fields)
    )


REGISTRY_CASES: list[tuple[str, str, Any, grpc.StatusCode, str]] = [
    ("Admin", "ImportModel", lambda w: [], INVALID, "header: the first message"),
    ("Admin", "ImportModel", lambda w: [pb.ImportModelChunk(data=b"x")], INVALID, "header: the"),
    ("Admin", "ImportModel", lambda w: [_header(0)], INVALID, "header.size_bytes: must be 1 to"),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(2**40)],
        INVALID,
        "header.size_bytes: must be 1 to",
    ),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(10), pb.ImportModelChunk(data=b"abc")],
        INVALID,
        "data: the stream ended after 3 of 10 bytes",
    ),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(2), pb.ImportModelChunk(data=b"abc")],
        INVALID,
        "data: more than the declared 2 bytes arrived",
    ),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(3), pb.ImportModelChunk(header=pb.ImportModelHeader(), data=b"abc")],
        INVALID,
        "header: only the first message may carry it",
    ),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(3, family="Bad Name"), pb.ImportModelChunk(data=b"abc")],
        INVALID,
        "header.family: 'Bad Name' is not a model family name",
    ),
    (
        "Admin",
        "ImportModel",
        lambda w: [_header(len(CHECKPOINT_LIKE)), pb.ImportModelChunk(data=CHECKPOINT_LIKE)],
        INVALID,
        "data: not a fedota checkpoint",
    ),
    ("Admin", "ImportModel", lambda w: [_header(3), TRUNCATED], INVALID, "ImportModelChunk"),
    (
        "Admin",
        "ListModels",
        lambda w: pb.ListModelsRequest(family="-x"),
        INVALID,
        "family: '-x' is not a model family name",
    ),
    ("Admin", "ListModels", lambda w: TRUNCATED, INVALID, "ListModelsRequest"),
    ("Admin", "GetModel", lambda w: pb.ModelRef(), INVALID, "ref: '' is not a model version"),
    ("Admin", "GetModel", lambda w: pb.ModelRef(ref="digits@v0"), INVALID, "is not a model"),
    ("Admin", "GetModel", lambda w: pb.ModelRef(ref="digits@v7"), NOT_FOUND, "does not exist"),
    (
        "Admin",
        "CreateRelease",
        lambda w: pb.CreateReleaseRequest(version="digits"),
        INVALID,
        "version: 'digits' is not a model version",
    ),
    (
        "Admin",
        "CreateRelease",
        lambda w: pb.CreateReleaseRequest(version="digits@v1"),
        NOT_FOUND,
        "model version digits@v1 does not exist",
    ),
    (
        "Admin",
        "CreateRelease",
        lambda w: pb.CreateReleaseRequest(version="digits@v1", notes="n" * 501),
        INVALID,
        "notes: must be at most 500 characters",
    ),
    ("Admin", "CreateRelease", lambda w: TRUNCATED, INVALID, "CreateReleaseRequest"),
    ("Admin", "ListReleases", lambda w: TRUNCATED, INVALID, "ListReleasesRequest"),
    ("Admin", "ListKeys", lambda w: TRUNCATED, INVALID, "ListKeysRequest"),
    (
        "Admin",
        "RotateKey",
        lambda w: pb.RotateKeyRequest(role="admin"),
        INVALID,
        "role: 'admin' is not one of",
    ),
    ("Admin", "RotateKey", lambda w: TRUNCATED, INVALID, "RotateKeyRequest"),
]

__all__ = ["REGISTRY_CASES"]
