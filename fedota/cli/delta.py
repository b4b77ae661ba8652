"""`fedota delta diff|apply|info`: make, apply and inspect differential model patches.

fedota.delta is imported only when a subcommand runs. Every failure a user can meet (wrong base,
bad or tampered patch, unreadable input, unwritable output) is one `fedota: error:` line and
exit status 2, and leaves no output file, temp file included (outputs are written to a temp file
and renamed only once complete and verified).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedota.cli.errors import CliError
from fedota.cli.output import human_bytes, print_fields, print_json, print_table

if TYPE_CHECKING:
    from fedota.delta import PatchHeader, Tensor

Progress = Callable[[int, int], None]


def register(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="delta_command", metavar="COMMAND", required=True)
    diff = commands.add_parser(
        "diff",
        help="make a patch from BASE to TARGET",
        description="Make a patch that turns BASE into TARGET (safetensors files). Lossless by "
        "default: the patched model is TARGET bit for bit. --max-error fp16 lets each float "
        "tensor move as far as rounding it to fp16 would (much smaller patches); "
        "--max-rel-error E bounds the error relative to the change over the whole model. A "
        "lossy patch releases a model a little different from TARGET: --emit-target writes "
        "exactly that model (what devices will compute). Exit status 2 on bad input.",
    )
    diff.add_argument("base", type=Path, metavar="BASE", help="the model devices run now")
    diff.add_argument("target", type=Path, metavar="TARGET", help="the model to release")
    diff.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.patch")
    mode = diff.add_mutually_exclusive_group()
    mode.add_argument(
        "--lossless", action="store_true", help="reproduce TARGET bit for bit (the default)"
    )
    mode.add_argument(
        "--max-error",
        choices=["fp16"],
        help="per tensor, no further from TARGET than its fp16 rounding",
    )
    mode.add_argument(
        "--max-rel-error",
        type=_relative_error,
        metavar="E",
        help="L2 error at most E times the L2 norm of the change, over the model",
    )
    diff.add_argument(
        "--emit-target",
        type=Path,
        metavar="EXACT.safetensors",
        help="also write the released model (base + decoded patch)",
    )
    diff.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    diff.set_defaults(handler=_diff)

    apply = commands.add_parser(
        "apply",
        help="apply PATCH to BASE",
        description="Apply PATCH to BASE and write the target model. Checks the base's hash "
        "first and the result's hash last; OUT appears only when verified. Streams: memory "
        "stays near the size of BASE plus one tensor. Exit status 2 on a wrong base or a bad "
        "patch, with nothing written.",
    )
    apply.add_argument("base", type=Path, metavar="BASE")
    apply.add_argument("patch", type=Path, metavar="PATCH")
    apply.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.safetensors")
    apply.set_defaults(handler=_apply)

    info = commands.add_parser(
        "info",
        help="show what a patch holds",
        description="Show a patch's hashes and, per tensor, the change, codec and payload size, "
        "with its ratio to the tensor as fp32. Reads the index only (its digest is checked).",
    )
    info.add_argument("patch", type=Path, metavar="PATCH")
    info.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    info.set_defaults(handler=_info)


def _diff(args: argparse.Namespace) -> int:
    from fedota import delta
    from fedota.delta.atomic import atomic_write

    _refuse_overwriting_inputs([args.output, args.emit_target], [args.base, args.target])
    if args.emit_target is not None and args.emit_target.resolve() == args.output.resolve():
        raise CliError("--emit-target and -o name the same file")
    mode = _mode(args)
    with _failures():
        base = _read_model(args.base)
        target = _read_model(args.target)
        with _progress("diff") as progress:
            try:
                patch = delta.diff(base, target, progress=progress, **mode)
            except ValueError as exc:  # a mode this build cannot honour (no lossy codec)
                raise CliError(str(exc)) from None
        emitted = False
        try:
            with _writing(args.output), atomic_write(args.output) as handle:
                size = patch.write(handle)
                if args.emit_target is not None:
                    assert patch.target is not None
                    with _writing(args.emit_target):
                        metadata = delta.SafetensorsFile(args.base).metadata
                        delta.save(
                            args.emit_target,
                            patch.target,
                            metadata=_without_int4(metadata),
                            expected_hash=patch.target_hash,
                        )
                    emitted = True
        except BaseException:
            if emitted:  # the patch failed after the target was written: take it back
                with contextlib.suppress(OSError):
                    os.unlink(args.emit_target)
            raise
    document = summary(patch.header, size)
    document["mode"] = mode
    document["output"] = str(args.output)
    if args.json:
        print_json(document)
        return 0
    totals = document["totals"]
    print_fields(
        {
            "patch": f"{args.output} ({human_bytes(size)}, {_percent(totals['ratio'])} of the "
            "target as fp32)",
            "mode": _mode_label(args),
            "tensors": _counts(document["tensors"]),
            "codecs": ", ".join(f"{k} {v}" for k, v in totals["codecs"].items()) or "-",
            "base": patch.base_hash,
            "target": patch.target_hash,
            **({"released": str(args.emit_target)} if args.emit_target else {}),
        }
    )
    return 0


def _apply(args: argparse.Namespace) -> int:
    from fedota import delta

    _refuse_overwriting_inputs([args.output], [args.patch])
    with _failures():
        for path in (args.base, args.patch):
            _check_readable(path)
        with _writing(args.output), _progress("apply") as progress:
            target_hash = delta.apply_file(args.base, args.patch, args.output, progress=progress)
    print_fields({"wrote": str(args.output), "target": target_hash})
    return 0


def _info(args: argparse.Namespace) -> int:
    from fedota import delta

    with _failures():
        _check_readable(args.patch)
        with open(args.patch, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header = delta.read_header(handle, size)
    document = summary(header, size)
    if args.json:
        print_json(document)
        return 0
    rows = [
        [
            t["name"],
            t["op"],
            t["dtype"],
            "x".join(map(str, t["shape"])) or "scalar",
            t["codec"] or "-",
            human_bytes(t["payload_bytes"]) if t["codec"] else "-",
            _percent(t["ratio"]) if t["ratio"] is not None else "-",
        ]
        for t in document["tensors"]
    ]
    print_table(["tensor", "op", "dtype", "shape", "codec", "payload", "ratio"], rows)
    totals = document["totals"]
    print_fields(
        {
            "patch": f"{human_bytes(size)}, {_percent(totals['ratio'])} of the target as fp32 "
            f"({human_bytes(totals['target_fp32_bytes'])})",
            "tensors": _counts(document["tensors"]),
            "base": header.base_hash,
            "target": header.target_hash,
        }
    )
    return 0


def summary(header: PatchHeader, patch_bytes: int) -> dict[str, Any]:
    """The figures `diff --json` and `info --json` print: per tensor and totals.

    `ratio` is payload bytes over the tensor's size as fp32 (the baseline of shipping it whole
    as fp32); the total ratio is the whole patch file over the target model as fp32.
    """
    from fedota.delta.codecs import by_id

    tensors = []
    codecs: dict[str, int] = {}
    fp32_total = 0
    for entry in header.entries:
        codec = None
        if entry.has_payload:
            known = by_id(entry.codec_id)
            codec = known.name if known is not None else f"codec-{entry.codec_id}"
            codecs[codec] = codecs.get(codec, 0) + 1
        fp32 = 4 * math.prod(entry.shape)
        if entry.op.name != "REMOVED":
            fp32_total += fp32
        tensors.append(
            {
                "name": entry.name,
                "op": entry.op.name.lower(),
                "dtype": entry.dtype,
                "shape": list(entry.shape),
                "codec": codec,
                "payload_bytes": entry.payload_len,
                "ratio": entry.payload_len / fp32 if codec and fp32 else None,
            }
        )
    return {
        "format_version": header.version,
        "base_hash": header.base_hash,
        "target_hash": header.target_hash,
        "tensors": tensors,
        "totals": {
            "tensors": len(tensors),
            "payload_bytes": header.payload_total,
            "patch_bytes": patch_bytes,
            "target_fp32_bytes": fp32_total,
            "ratio": patch_bytes / fp32_total if fp32_total else None,
            "codecs": dict(sorted(codecs.items())),
        },
    }


def _mode(args: argparse.Namespace) -> dict[str, Any]:
    if args.max_error is not None:
        return {"max_error": args.max_error}
    if args.max_rel_error is not None:
        return {"max_rel_error": args.max_rel_error}
    return {"lossless": True}


def _mode_label(args: argparse.Namespace) -> str:
    if args.max_error is not None:
        return f"max error {args.max_error}"
    if args.max_rel_error is not None:
        return f"max relative error {args.max_rel_error:g}"
    return "lossless"


def _relative_error(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _read_model(path: Path) -> dict[str, Tensor]:
    from fedota import delta

    _check_readable(path)
    try:
        return delta.load(path)
    except delta.PatchError as exc:
        raise CliError(f"{path}: {exc}") from None


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise CliError(f"cannot read {path}: no such file")


def _refuse_overwriting_inputs(outputs: list[Path | None], inputs: list[Path]) -> None:
    sources = {p.resolve() for p in inputs}
    for output in outputs:
        if output is not None and output.resolve() in sources:
            raise CliError(f"{output} is also an input; write the result elsewhere")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name the output in an OSError raised while writing it."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or Path(exc.filename).parent == path.parent:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


@contextlib.contextmanager
def _failures() -> Iterator[None]:
    """Turn the library's errors (and an unexpected OSError) into one-line CLI errors."""
    from fedota.delta import PatchError

    try:
        yield
    except PatchError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CliError(f"cannot access{where}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Progress | None]:
    """A rich progress bar on stderr when it is a terminal; None (no output) otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = (f"{label}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _without_int4(metadata: dict[str, str]) -> dict[str, str]:
    from fedota.delta.safetensors_io import INT4_KEY, INT4_SHAPES_KEY

    return {k: v for k, v in metadata.items() if k not in (INT4_KEY, INT4_SHAPES_KEY)}


def _counts(tensors: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for tensor in tensors:
        counts[tensor["op"]] = counts.get(tensor["op"], 0) + 1
    return ", ".join(f"{count} {op}" for op, count in counts.items())


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.2f}%"


__all__ = ["register", "summary"]
