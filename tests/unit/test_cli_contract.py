"""The command line's contract, as a table of misuse: a wrong value on the command line exits 2
before any I/O (usage + one line naming the argument); a model or operation that fails exits 1
with one line naming the URL; nothing ends in a traceback; commands that find nothing say so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(tmp_path_factory.mktemp("contract") / "model"), [layer])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", *args], capture_output=True, text=True, timeout=120
    )


USAGE = [
    (
        ["validate", "{m}", "--target-tf", "2.9"],
        "argument --target-tf: '2.9' is not a shipped TensorFlow release",
    ),
    (
        ["validate", "{m}", "--target-tf", "abc"],
        "argument --target-tf: 'abc' is not a shipped TensorFlow release",
    ),
    (
        ["validate", "{m}", "--target-tf", "2.30"],
        "argument --target-tf: '2.30' is not a shipped TensorFlow release",
    ),
    (["validate", "{m}", "--require-releases", "abc"], "argument --require-releases: release range 'abc'"),
    (["validate", "{m}", "--op-policy", "{bad json"], "argument --op-policy: op policy is not JSON"),
    (["validate", "{m}", "--op-policy", '{"error": ["file-raed"]}'], "'file-raed' is not a family"),
    (
        ["validate", "{m}", "--expect", "/nonexistent.yaml"],
        "argument --expect: no such file: /nonexistent.yaml",
    ),
    (
        ["publish", "{m}", "{t}/b", "--version", "-1"],
        "argument --version: must be 'auto', 'same' or a version",
    ),
    (
        ["publish", "{m}", "{t}/b", "--version", "abc"],
        "argument --version: must be 'auto', 'same' or a version",
    ),
    (
        ["publish", "{m}", "{t}/b", "--keep-served", "0"],
        "argument --keep-served: must be a whole number of at least 1",
    ),
    (
        ["publish", "{m}", "{t}/b", "--concurrency", "0"],
        "argument --concurrency: must be a whole number from 1 to 256",
    ),
    (
        ["copy", "{m}", "{t}/c", "--concurrency", "0"],
        "argument --concurrency: must be a whole number from 1 to 256",
    ),
    (
        ["warmup", "{m}", "--inputs", "{t}/x.npz", "--warmup-count", "0"],
        "argument --warmup-count: must be a whole number from 1 to 1000",
    ),
    (
        ["warmup", "{m}", "--inputs", "{t}/x.npz", "--warmup-count", "1001"],
        "argument --warmup-count: must be a whole number from 1 to 1000",
    ),
    (
        ["export", "{m}", "{t}/b", "--warmup-count", "0"],
        "argument --warmup-count: must be a whole number from 1 to 1000",
    ),
    (["gc", "{t}/b", "--keep-last", "0"], "argument --keep-last: must be a whole number of at least 1"),
    (["gc", "{t}/b", "--min-age-seconds", "-1"], "argument --min-age-seconds: must be a number of 0 or more"),
    (["strip-default-attrs", "{m}", "{t}/s", "--add", "--target-tf", "1.15"], "argument --target-tf: '1.15'"),
    (
        ["verify", "--signature", "{m}"],
        "verify --signature needs --trusted-signers PEM (or $SAVEDMODEL_REQUIRE_SIGNATURE)",
    ),
    (["sign", "{m}", "--key", "{t}/missing.pem"], "argument --key: no such file: "),
    (["publish", "{m}", "{t}/b", "--sign-cert", "{t}/x.npz"], "--sign-cert needs --sign-key"),
    (
        ["publish", "{m}", "{t}/b", "--shard-size", "0"],
        "argument --shard-size: must be a whole number of at least 1",
    ),
]


@pytest.mark.parametrize(("args", "expected"), USAGE, ids=[" ".join(a[:1] + a[2:]) for a, _ in USAGE])
def test_usage_mistakes_exit_2_before_any_io(
    args: list[str], expected: str, model: str, tmp_path: Path
) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4), np.float32))
    done = run(*[a.replace("{m}", model).replace("{t}", str(tmp_path)) for a in args])
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"savedmodel {args[0]}: error: ") and expected in last, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # nothing was touched


def test_commands_that_find_nothing_say_so(model: str, tmp_path: Path) -> None:
    missing = run("versions", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"savedmodel versions: error: {tmp_path / 'nowhere'}: no such base path"
    )
    (tmp_path / "empty").mkdir()
    empty = run("versions", str(tmp_path / "empty"))
    assert empty.returncode == 0 and empty.stdout.strip() == f"no versions under {tmp_path / 'empty'}"
    published = run(
        "publish",
        model,
        str(tmp_path / "base"),
        "--serving-config",
        str(tmp_path / "models.config"),
        "--model-name",
        "ranker",
    )
    assert published.returncode == 0, published.stderr
    nosuch = run("serving", "show", str(tmp_path / "models.config"), "--model-name", "nosuch")
    assert nosuch.returncode == 1 and nosuch.stderr.strip() == (
        f"savedmodel serving: error: {tmp_path / 'models.config'}: no model 'nosuch' in the config (models: ranker)"
    )


def test_a_copy_never_writes_into_its_source(model: str, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "src"
    shutil.copytree(model, src)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    for args, expected in [
        (["copy", str(src), str(src / "sub")], f"{src / 'sub'}: the destination is inside the source"),
        (["copy", str(src / "variables"), str(src)], f"{src}: the source is inside the destination"),
        (["strip-default-attrs", str(src), str(src / "stripped")], "the destination is inside the source"),
        (["publish", str(src), str(src / "serving")], "the base path is inside the source model"),
    ]:
        done = run(*args)
        assert done.returncode == 1 and expected in done.stderr, (args, done.stderr)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the source is as it was
    memory = run("copy", model, "memory://m/model")  # and on object-store-like filesystems too
    assert memory.returncode == 0, memory.stderr


def test_a_refused_publish_leaves_no_base_path_behind(model: str, tmp_path: Path) -> None:
    done = run("publish", str(tmp_path / "not-a-model"), str(tmp_path / "new-base"))
    assert done.returncode == 1 and "not-a-model: does not exist" in done.stderr, done.stderr
    refused = run("export", model, str(tmp_path / "new-base"), "--required-signature", "nosuch")
    assert refused.returncode == 1, refused.stderr
    assert not (tmp_path / "new-base").exists()


def test_dash_o_applies_to_the_remote_side_of_two_location_commands(model: str, tmp_path: Path) -> None:
    """The README's ``-o KEY=VALUE`` works for publish, copy, export and the rewrites: it goes
    to the side that is not a local path; between two kinds of store it is refused as ambiguous."""
    copied = run("copy", model, "memory://dash-o/model", "-o", "skip_instance_cache=true")
    assert copied.returncode == 0, copied.stderr
    published = run("publish", model, "memory://dash-o/serving", "-o", "skip_instance_cache=true")
    assert published.returncode == 0, published.stderr
    ambiguous = run("copy", "gs://a/m", "s3://b/m", "-o", "token=anon")
    assert ambiguous.returncode == 2, ambiguous.stderr
    assert ambiguous.stderr.strip().splitlines()[-1] == (
        "savedmodel copy: error: -o would apply to both gs:// and s3://; use --src-option and --dst-option"
    )


def test_validate_compatible_with_takes_what_diff_takes(model: str, tmp_path: Path) -> None:
    """One resolver for the model to compare with: a SavedModel, a serving base path (the
    version it serves) and, for export, "served"; validate's "served" has no destination."""
    base = tmp_path / "base"
    assert run("publish", model, str(base)).returncode == 0
    rng = np.random.default_rng(1)
    renamed = export_dense_model(
        str(tmp_path / "renamed"),
        [DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))],
        input_key="features",
    )
    for against in (model, str(base)):
        done = run("validate", renamed, "--compatible-with", against)
        assert done.returncode == 1 and "signature-breaking-change" in done.stdout, done.stdout + done.stderr
        assert "Wire format" not in done.stdout + done.stderr
    assert run("validate", model, "--compatible-with", str(base)).returncode == 0
    served = run("validate", renamed, "--compatible-with", "served")
    assert served.returncode == 2 and "--compatible-with served needs a destination" in served.stderr
    refused = run("export", renamed, str(base), "--compatible-with", "served")
    assert refused.returncode == 1 and "signature-breaking-change" in refused.stdout + refused.stderr
    empty = run("validate", renamed, "--compatible-with", str(tmp_path / "empty-base"))
    assert empty.returncode == 1, empty.stderr
    assert "neither a SavedModel nor a serving base path with a complete version" in empty.stderr


# Failures of the model or the operation: exit 1, one line, starting with the path concerned.
FAILURES = [
    (["inspect", "{t}/nowhere"], "{t}/nowhere"),
    (["variables", "{m}", "no/such"], "{m}/variables/variables.index"),
    (["inspect", "{t}/corrupt"], "{t}/corrupt/saved_model.pb"),
    (["warmup", "{c}", "--inputs", "{t}/wide.npz"], "{c}"),
    (["warmup", "{c}", "--inputs", "{t}/x.npz", "--signature-name", "nope"], "{c}"),
    (["export", "{m}", "{t}/b", "--inputs", "{t}/wide.npz"], "{m}"),
    (["copy", "{m}", "{c}"], "{c}"),
    (["verify", "{m}"], "{m}/assets.extra/airflow_savedmodel_manifest.json"),
    (["diff", "{m}", "{t}/nowhere"], "{t}/nowhere"),
    (["serving", "show", "{t}/models.config"], "{t}/models.config"),
    (["gc", "{t}/nowhere"], "{t}/nowhere"),
    (["sign", "{c}", "--key", "{t}/x.npz"], "{t}/x.npz"),  # not a key: named, never quoted
    (["verify", "--signature", "{m}", "--trusted-signers", "{t}/x.npz"], "{t}/x.npz"),  # not a trust file
]


@pytest.mark.parametrize(("args", "path"), FAILURES, ids=[" ".join(a[:1] + a[2:]) for a, _ in FAILURES])
def test_failures_exit_1_with_one_line_naming_the_path(
    args: list[str], path: str, model: str, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "saved_model.pb").write_bytes(b"\xff\xff\xff")
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4), np.float32))
    np.savez(tmp_path / "wide.npz", x=np.zeros((1, 5), np.float32))

    def fill(text: str) -> str:
        return text.replace("{m}", model).replace("{c}", str(copy)).replace("{t}", str(tmp_path))

    done = run(*[fill(a) for a in args])
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"savedmodel {args[0]}: error: {fill(path)}: "), (
        done.stderr
    )
    assert not (tmp_path / "b").exists()


def test_the_cli_signs_in_shards_when_asked(model: str, tmp_path: Path) -> None:
    """``--shard-size`` on publish and on sign: the version's statement uses the shards
    serialization, and ``verify --signature`` accepts it."""
    import base64
    import json

    from signing_keys import key_pair

    keys = key_pair(tmp_path / "keys", "cli", password=None)
    published = run(
        "publish", model, str(tmp_path / "b"), "--sign-key", str(keys.private), "--shard-size", "64"
    )
    assert published.returncode == 0, published.stderr

    def serialization(version: Path) -> dict[str, object]:
        bundle = json.loads((version / "model.sig").read_bytes())
        return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["predicate"]["serialization"]

    assert serialization(tmp_path / "b" / "1")["shard_size"] == 64
    resigned = run("sign", str(tmp_path / "b" / "1"), "--key", str(keys.private), "--shard-size", "128")
    assert resigned.returncode == 0, resigned.stderr
    assert serialization(tmp_path / "b" / "1")["shard_size"] == 128
    checked = run("verify", str(tmp_path / "b" / "1"), "--signature", "--trusted-signers", str(keys.public))
    assert checked.returncode == 0, checked.stdout + checked.stderr
