"""Generate the op and kernel registries shipped as package data, two files per TensorFlow release.

``tf-X.Y.pb.gz`` is the gzipped OpList of every op the release registers, descriptions removed:
what strip/add default attrs and target-release validation consult. ``tf-X.Y.kernels.pb.gz``
is its KernelList for the CPU and GPU device types (and DEFAULT, registered for every device),
without host-memory args and priorities: which ops have a kernel on which device, for which
attr values. Both come from the ``tensorflow`` wheel, whose kernel registry includes the GPU
kernels (``tensorflow-cpu`` registers CPU kernels only); no GPU is needed to read it.
``releases.json`` records each release's GraphDef version range.

    python scripts/gen_op_registry.py 2.12 2.13 ... 2.21

installs each release into a throw-away virtual environment with uv (cached between runs)
and dumps its registries. The output is byte-for-byte reproducible (sorted, deterministic
serialization, gzip without a timestamp). To add a release: run it with the new version and
commit the two new files under airflow_savedmodel/format/opdefs/ (releases() finds them).
"""

from __future__ import annotations

import argparse
import gzip
import json
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
if sys.argv[1] == "versions":
    import json
    from tensorflow.python.framework import versions
    print(json.dumps({"graph_def_version": versions.GRAPH_DEF_VERSION,
                      "graph_def_version_min_producer": versions.GRAPH_DEF_VERSION_MIN_PRODUCER}))
    sys.exit(0)
if sys.argv[1] == "ops":
    sys.stdout.buffer.write(ordered.SerializeToString(deterministic=True))
    sys.exit(0)
from tensorflow.core.framework import kernel_def_pb2
from tensorflow.python.framework import kernels
kept = []
for kernel in kernels.get_all_registered_kernels().kernel:
    if kernel.device_type not in ("CPU", "GPU", "DEFAULT"):
        continue
    kernel.ClearField("host_memory_arg")
    kernel.ClearField("priority")
    kept.append(kernel)
key = lambda k: (k.op, k.device_type, k.label, k.SerializeToString(deterministic=True))
listed = kernel_def_pb2.KernelList(kernel=sorted(kept, key=key))
sys.stdout.buffer.write(listed.SerializeToString(deterministic=True))
"""


def dump(version: str, python: str, what: str) -> bytes:
    result = subprocess.run(
        [python, "-c", DUMP, what], capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin"}
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
                [uv, "pip", "install", "-q", "--python", python, f"tensorflow=={version}.*"], check=True
            )
            outputs = {"": dump(version, python, "ops"), ".kernels": dump(version, python, "kernels")}
            graph_versions = json.loads(dump(version, python, "versions"))
        table_file = TARGET / "releases.json"
        table = json.loads(table_file.read_text()) if table_file.exists() else {}
        table[version] = graph_versions
        ordered = dict(sorted(table.items(), key=lambda kv: tuple(int(x) for x in kv[0].split("."))))
        table_file.write_text(json.dumps(ordered, indent=2) + "\n")
        for suffix, data in outputs.items():
            target = TARGET / f"tf-{version}{suffix}.pb.gz"
            target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
            print(f"{target.name}: {len(data)} bytes, {target.stat().st_size} compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
