"""Generate the op registries shipped as package data, one per TensorFlow release.

Each file is the gzipped OpList of every op a tensorflow-cpu release registers, with
descriptions removed: what strip/add default attrs and target-release validation consult.

    python scripts/gen_op_registry.py 2.12 2.13 ... 2.21

installs each release into a throw-away virtual environment with uv (cached between runs)
and dumps its registry. To add a release: run it with the new version, commit the new
airflow_savedmodel/format/opdefs/tf-X.Y.pb.gz, and add X.Y to RELEASES in opdefs/__init__.py.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "airflow_savedmodel" / "format" / "opdefs"

DUMP = r"""
import sys
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session
ops = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
for op in ops.op:
    op.ClearField("summary")
    op.ClearField("description")
    for arg in list(op.input_arg) + list(op.output_arg):
        arg.ClearField("description")
    for attr in op.attr:
        attr.ClearField("description")
ordered = op_def_pb2.OpList(op=sorted(ops.op, key=lambda o: o.name))
sys.stdout.buffer.write(ordered.SerializeToString(deterministic=True))
"""


def dump(version: str, python: str) -> bytes:
    result = subprocess.run(
        [python, "-c", DUMP], capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"}
    )
    if result.returncode != 0:
        raise SystemExit(
            f"tensorflow-cpu {version}: dumping the op registry failed:\n{result.stderr.decode()[-3000:]}"
        )
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("versions", nargs="+", help="TensorFlow releases, e.g. 2.15")
    args = parser.parse_args()
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    for version in args.versions:
        with tempfile.TemporaryDirectory() as tmp:
            venv = Path(tmp) / "venv"
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            python = str(venv / "bin" / "python")
            subprocess.run(
                [uv, "pip", "install", "-q", "--python", python, f"tensorflow-cpu=={version}.*"], check=True
            )
            data = dump(version, python)
        target = TARGET / f"tf-{version}.pb.gz"
        target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
        print(f"{target.name}: {len(data)} bytes, {target.stat().st_size} compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
