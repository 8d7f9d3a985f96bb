"""Where the TensorFlow-written test models live: .cache/zoo-<hash of tf_zoo.py and the TF
version>, built once (by the test session or the fuzzer) and reused until either changes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def zoo_dir() -> Path:
    from importlib.metadata import version

    digest = hashlib.sha256(
        (TESTS / "tf_zoo.py").read_bytes() + version("tensorflow-cpu").encode()
    ).hexdigest()[:12]
    return ROOT / ".cache" / f"zoo-{digest}"


def built_zoo() -> dict[str, Path]:
    """name -> path of each zoo model, building the zoo first when the cache lacks it (only
    then is TensorFlow imported: the fuzzer forks, and a process with TF loaded forks badly)."""
    root = zoo_dir()
    done = root / ".complete"
    if done.exists():
        return {d.name: d / "model" for d in sorted(root.iterdir()) if (d / "model").is_dir()}
    import fcntl

    import tf_zoo

    root.parent.mkdir(parents=True, exist_ok=True)
    # Test workers (pytest -n) and the fuzzer may ask at once: one builds, the others wait.
    with open(root.parent / "zoo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for stale in root.parent.glob("zoo-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tf_zoo.build_all(root)
            done.touch()
    return {name: root / name / "model" for name in tf_zoo.BUILDERS}
