"""Every storage command of the CLI against a store that refuses the credentials, on gs:// and
s3://, with credentials in the options and in the URL: exit 1, one line naming the command and the
(redacted) URL, no traceback, and no credential anywhere in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

from integration.servers import DenyingServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRETS = ("ya29.SECRET-TOKEN-VALUE", "AKIASECRETKEYID", "SECRET-ACCESS-VALUE", "URLSECRET")


@pytest.fixture(scope="module")
def denying() -> Iterator[DenyingServer]:
    server = DenyingServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax")
    return export_dense_model(str(tmp_path_factory.mktemp("cli-fail") / "model"), [layer])


def options(store: str, endpoint: str) -> list[str]:
    if store == "gs":  # a real token string makes gcsfs check it at Google first: that URL holds it
        return ["token=ya29.SECRET-TOKEN-VALUE", f"endpoint_url={endpoint}"]
    client = json.dumps({"endpoint_url": endpoint, "region_name": "us-west-2"})
    return ["key=AKIASECRETKEYID", "secret=SECRET-ACCESS-VALUE", f"client_kwargs={client}"]


def commands(store: str, local: str, tmp: Path) -> list[tuple[list[str], str]]:
    """(arguments, the remote URL the message must name); -o/--dst/--src options added by the test."""
    base = shown = f"{store}://bucket/ranker"
    return [
        (["inspect", f"{base}/1"], f"{shown}/1"),
        (["variables", f"{base}/1"], f"{shown}/1"),
        (["validate", f"{base}/1", "--deep"], f"{shown}/1"),
        (["versions", base], shown),
        (["gc", base, "--keep-last", "1"], shown),
        (["verify", f"{base}/1"], f"{shown}/1"),
        (["serving", "show", f"{base}/models.config"], f"{shown}/models.config"),
        (["copy", local, f"{base}/copy", "DST"], f"{shown}/copy"),
        (["copy", f"{base}/1", str(tmp / "back"), "SRC"], f"{shown}/1"),
        (
            ["publish", local, base, "DST", "--serving-config", f"{base}/models.config", "--model-name", "r"],
            shown,
        ),
        (["strip-default-attrs", f"{base}/1", str(tmp / "stripped"), "SRC"], f"{shown}/1"),
    ]


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_refused_credentials_give_one_line_without_secrets(
    store: str, denying: DenyingServer, model: str, tmp_path: Path
) -> None:
    opts = options(store, denying.endpoint)
    env = {**os.environ, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    for args, shown in commands(store, model, tmp_path):
        side = args[-1] if args[-1] in ("SRC", "DST") else None
        if "DST" in args:
            side = "DST"
        argv = [a for a in args if a not in ("SRC", "DST")]
        flag = {"SRC": "--src-option", "DST": "--dst-option", None: "-o"}[side]
        for opt in opts:
            argv += [flag, opt]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_savedmodel", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 1, (argv, output)
        assert "Traceback" not in output, (argv, output)
        for secret in SECRETS:
            assert secret not in output, (argv, secret, output)
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"savedmodel {argv[0]}: error: "), (argv, last)
        assert shown in last, (argv, last)
        assert "storage request failed" in last, (argv, last)
        assert "401" in last or "Unauthorized" in last or "oauth2.googleapis.com" in last, (argv, last)


@pytest.mark.parametrize("command", [["inspect"], ["versions"], ["serving", "show"]])
def test_credentials_in_a_url_are_refused_without_echoing_them(command: list[str]) -> None:
    url = "s3://AKIASECRETKEYID:URLSECRET@bucket/ranker"
    result = subprocess.run(
        [sys.executable, "-m", "airflow_savedmodel", *command, url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "URLSECRET" not in result.stderr + result.stdout and "AKIASECRETKEYID" not in result.stderr
    assert result.stderr.strip() == (
        f"savedmodel {command[0]}: error: s3://***@bucket/ranker: credentials in a gs:// or s3:// URL are not"
        " used by the filesystem; pass them as storage options or through an Airflow connection"
    )
