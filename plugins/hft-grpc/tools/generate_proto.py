"""Regenerate ``src/hft_grpc/_generated`` from ``proto/hft/v1/*.proto`` with grpcio-tools
(pinned in the ``[test]`` extra so that the output is byte-for-byte reproducible).

Run from anywhere::

    python plugins/hft-grpc/tools/generate_proto.py          # rewrite the checked-in code
    python plugins/hft-grpc/tools/generate_proto.py --check  # exit 1 if it is out of date

protoc names Python modules after the proto file paths (``hft/v1/orders.proto`` becomes
``hft.v1.orders_pb2``), and ``hft`` is the core package; so the generated imports are rewritten
to ``hft_grpc._generated``, where the modules live; the descriptors keep their ``hft/v1/...``
names.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto"
OUT = ROOT / "src" / "hft_grpc" / "_generated"
_IMPORT = re.compile(rb"^from hft\.v1 import ", re.MULTILINE)
_INIT = b'"""Code generated from proto/hft/v1 by tools/generate_proto.py: do not edit."""\n'


def generate() -> dict[str, bytes]:
    """File name -> content of every generated module."""
    sources = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "hft" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = {"__init__.py": _INIT}
        for path in sorted((Path(tmp) / "hft" / "v1").iterdir()):
            content = _IMPORT.sub(b"from hft_grpc._generated import ", path.read_bytes())
            if path.name.endswith("_grpc.py"):
                # grpc_tools writes untyped service modules; the server does not use them.
                content = b"# mypy: ignore-errors\n" + content
            elif path.name.endswith(".pyi"):
                # protoc's stubs leave Mapping's type arguments out, which --strict refuses.
                content = b'# mypy: disable-error-code="type-arg"\n' + content
            files[path.name] = content
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    check = parser.parse_args(argv).check
    files = generate()
    present = {p.name for p in OUT.glob("*.py*")}
    stale = sorted(
        name
        for name, content in files.items()
        if not (OUT / name).is_file() or (OUT / name).read_bytes() != content
    ) + sorted(present - set(files))
    if check:
        for name in stale:
            print(f"stale: {OUT / name}")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name in present - set(files):
        (OUT / name).unlink()
    for name, content in files.items():
        (OUT / name).write_bytes(content)
    print(f"wrote {len(files)} files to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
