"""Regenerate the Python code for the .proto sources: `python -m fedota.protos._generate`.

protoc names generated modules after the proto path (`fedota/v1/fleet.proto` imports as
`fedota.v1.fleet_pb2`); the package installs as `fedota.protos.v1`, so the imports are rewritten.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
SOURCE_DIR = PROTO_ROOT / "fedota" / "v1"
DEFAULT_OUT = PROTO_ROOT / "v1"
_IMPORT = re.compile(r"^from fedota\.v1 import ", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules into out_dir and return their paths.

    Raises:
        RuntimeError: protoc failed (its message is included).
    """
    from grpc_tools import protoc  # dev-only dependency

    sources = sorted(SOURCE_DIR.glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(s.relative_to(PROTO_ROOT)) for s in sources),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(s.name for s in sources)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted((Path(tmp) / "fedota" / "v1").iterdir()):
            text = _IMPORT.sub("from fedota.protos.v1 import ", produced.read_text())
            target = out_dir / produced.name
            target.write_text(text)
            written.append(target)
        init = out_dir / "__init__.py"
        init.write_text('"""Generated gRPC and protobuf code for proto package fedota.v1."""\n')
        written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    if args.out == DEFAULT_OUT and DEFAULT_OUT.exists():
        for stale in DEFAULT_OUT.glob("*_pb2*.py*"):
            stale.unlink()
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out.is_absolute() else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
