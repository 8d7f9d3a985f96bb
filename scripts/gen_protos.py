"""Regenerate airflow_savedmodel/protos/*_pb2.py and .pyi stubs from protos/.

Run `make protos` after editing a .proto file; tests/unit/test_protos.py fails
while the checked-in modules are out of date.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("airflow_savedmodel") / "protos"


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under protos/ into out_dir; return the written files."""
    from grpc_tools import protoc

    proto_include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{proto_include}",
        f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / PACKAGE).glob("*_pb2.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if checked-in files differ")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        stale = []
        for path in generated:
            target = ROOT / PACKAGE / path.name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                stale.append(path.name)
                if not args.check:
                    shutil.copyfile(path, target)
        if args.check and stale:
            print("out of date with protos/: " + ", ".join(stale), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
