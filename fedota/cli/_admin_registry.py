"""`fedota admin models|releases|keys`: the model registry, signed releases and signing keys."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from fedota.cli._admin_base import command, group, now
from fedota.cli._admin_client import AdminClient
from fedota.cli._admin_views import timestamp, when
from fedota.cli.errors import CliError
from fedota.cli.output import human_bytes, print_fields, print_json, print_line, print_table
from fedota.protos.v1 import releases_pb2

# An upload goes in pieces well under gRPC's 4 MiB message cap.
UPLOAD_CHUNK = 1024 * 1024
# Uploads and release builds take longer than a listing: their own deadline.
LONG_TIMEOUT = 900.0
VERSION_COLUMNS = ("VERSION", "SOURCE", "PARENT", "PARAMETERS", "VARIANTS", "CREATED")
RELEASE_COLUMNS = ("ID", "VERSION", "STATE", "TARGETS", "ARTIFACTS", "CREATED")
KEY_COLUMNS = ("ROLE", "KEY ID", "CREATED")


def register(groups: Any) -> None:
    """Add the models, releases and keys groups to `fedota admin`."""
    models = group(groups, "models", "import and list model versions")
    imported = command(models, "import", "import an fp32 checkpoint as a new version", _import)
    imported.add_argument(
        "file", type=Path, metavar="FILE", help="a fedota .safetensors checkpoint"
    )
    imported.add_argument("--family", required=True, help="model family (created on first import)")
    imported.add_argument(
        "--parent", default="", help="family@vN it derives from (default: latest)"
    )
    imported.add_argument(
        "--metric",
        dest="metrics",
        action="append",
        type=_metric,
        default=[],
        metavar="NAME=NUMBER",
        help="record a metric with the version (repeatable)",
    )
    listing = command(models, "list", "list model versions", _models_list)
    listing.add_argument("--family", default="", help="only this family")
    show = command(models, "show", "show one version and its artifacts", _models_show)
    show.add_argument("ref", metavar="FAMILY@vN")

    releases = group(groups, "releases", "build and sign releases")
    create = command(releases, "create", "build every variant of a version and sign it", _release)
    create.add_argument("version", metavar="FAMILY@vN")
    create.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        choices=("fp32", "int8", "int4", "mcu-int8"),
        help="build only these variants (repeatable; default: every one the model has)",
    )
    create.add_argument("--notes", default="", help="free text kept with the release")
    command(releases, "list", "list releases", _releases_list)

    keys = group(groups, "keys", "the update-signing (TUF) keys")
    command(keys, "list", "list the current signing keys", _keys_list)
    rotate = command(keys, "rotate", "replace a role's key (a new root signs it)", _keys_rotate)
    rotate.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"))


def _import(args: argparse.Namespace, client: AdminClient) -> None:
    path: Path = args.file
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    header = releases_pb2.ImportModelHeader(
        family=args.family, size_bytes=size, parent=args.parent, metrics=dict(args.metrics)
    )
    with handle:
        version = client.call_stream(
            "ImportModel", _chunks(header, handle), releases_pb2.ModelVersion, timeout=LONG_TIMEOUT
        )
    if args.json:
        print_json(_json(version))
    else:
        print_line(f"imported {version.ref} ({human_bytes(size)}, {version.content_sha256[:16]})")


def _chunks(header: releases_pb2.ImportModelHeader, handle: Any) -> Iterator[Message]:
    yield releases_pb2.ImportModelChunk(header=header)
    while data := handle.read(UPLOAD_CHUNK):
        yield releases_pb2.ImportModelChunk(data=data)


def _models_list(args: argparse.Namespace, client: AdminClient) -> None:
    request = releases_pb2.ListModelsRequest(family=args.family)
    response = client.call("ListModels", request, releases_pb2.ListModelsResponse)
    if args.json:
        print_json([_json(v) for v in response.versions])
        return
    moment = now()
    rows = [
        [
            v.ref,
            v.source,
            v.parent or "-",
            f"{v.parameter_count:,}",
            ", ".join(a.variant for a in v.artifacts),
            when(timestamp(v, "created_at"), moment),
        ]
        for v in response.versions
    ]
    print_table(VERSION_COLUMNS, rows, empty="no model versions")


def _models_show(args: argparse.Namespace, client: AdminClient) -> None:
    version = client.call(
        "GetModel", releases_pb2.ModelRef(ref=args.ref), releases_pb2.ModelVersion
    )
    if args.json:
        print_json(_json(version))
        return
    print_fields(
        {
            "version": version.ref,
            "architecture": version.architecture,
            "content sha256": version.content_sha256,
            "parent": version.parent or "-",
            "source": version.source,
            "parameters": f"{version.parameter_count:,}",
            "metrics": _metrics(version.metrics),
            "created": when(timestamp(version, "created_at"), now()),
        }
    )
    _artifact_table(version.artifacts)


def _release(args: argparse.Namespace, client: AdminClient) -> None:
    request = releases_pb2.CreateReleaseRequest(
        version=args.version, variants=args.variants, notes=args.notes
    )
    release = client.call("CreateRelease", request, releases_pb2.Release, timeout=LONG_TIMEOUT)
    if args.json:
        print_json(_json(release))
        return
    print_line(
        f"release {release.id} of {release.version} is {release.state} "
        f"(targets metadata v{release.targets_version})"
    )
    _artifact_table(release.artifacts)


def _releases_list(args: argparse.Namespace, client: AdminClient) -> None:
    response = client.call(
        "ListReleases", releases_pb2.ListReleasesRequest(), releases_pb2.ListReleasesResponse
    )
    if args.json:
        print_json([_json(r) for r in response.releases])
        return
    moment = now()
    rows = [
        [
            r.id,
            r.version,
            r.state,
            str(r.targets_version or "-"),
            ", ".join(a.variant for a in r.artifacts),
            when(timestamp(r, "created_at"), moment),
        ]
        for r in response.releases
    ]
    print_table(RELEASE_COLUMNS, rows, empty="no releases")


def _keys_list(args: argparse.Namespace, client: AdminClient) -> None:
    response = client.call(
        "ListKeys", releases_pb2.ListKeysRequest(), releases_pb2.ListKeysResponse
    )
    if args.json:
        print_json(_json(response))
        return
    moment = now()
    rows = [[k.role, k.keyid, when(timestamp(k, "created_at"), moment)] for k in response.keys]
    print_table(KEY_COLUMNS, rows, empty="no signing keys")
    print_line(f"root metadata version {response.root_version}")


def _keys_rotate(args: argparse.Namespace, client: AdminClient) -> None:
    request = releases_pb2.RotateKeyRequest(role=args.role)
    response = client.call("RotateKey", request, releases_pb2.RotateKeyResponse)
    if args.json:
        print_json(_json(response))
        return
    print_line(
        f"rotated the {args.role} key: {response.old_key.keyid[:16]} -> "
        f"{response.new_key.keyid[:16]} (root v{response.root_version})"
    )


def _artifact_table(artifacts: Any) -> None:
    rows = [
        [a.variant, human_bytes(a.size_bytes), a.content_sha256[:16], _metrics(a.metrics)]
        for a in artifacts
    ]
    print_table(("VARIANT", "SIZE", "CONTENT", "METRICS"), rows, empty="no artifacts")


def _metrics(metrics: Any) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())) or "-"


def _json(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def _metric(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER")
    return name, number


__all__ = ["register"]
