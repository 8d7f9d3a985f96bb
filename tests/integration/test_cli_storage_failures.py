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


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (
            json.dumps({"client_id": "id", "client_secret": "SECRET-ACCESS-VALUE"}),
            "cannot set up the filesystem from its options: the credentials lack the field 'refresh_token'",
        ),
        (
            "{not_json_file}",
            "cannot set up the filesystem from its options: JSONDecodeError: Expecting value",
        ),
        ("{missing_file}", "token file {missing_file} does not exist"),
    ],
)
def test_malformed_gcs_credentials_end_in_one_typed_line(
    token: str, expected: str, tmp_path: Path, model: str
) -> None:
    """gcsfs's own credential parsing fails (KeyError, JSONDecodeError) or would send a
    missing key file's path to Google as a token: each ends as one line naming the URL."""
    not_json, missing = tmp_path / "token.json", tmp_path / "missing-key.json"
    not_json.write_text("not json")
    fill = {"not_json_file": str(not_json), "missing_file": str(missing)}
    for name, value in fill.items():
        token, expected = token.replace(f"{{{name}}}", value), expected.replace(f"{{{name}}}", value)
    env = {**os.environ, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    for args in (["inspect", "gs://bucket/m"], ["publish", model, "gs://bucket/serving"]):
        option = "-o" if args[0] == "inspect" else "--dst-option"
        done = subprocess.run(
            [sys.executable, "-m", "airflow_savedmodel", *args, option, f"token={token}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(f"savedmodel {args[0]}: error: gs://bucket/"), done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "SECRET-ACCESS-VALUE" not in done.stderr


def test_malformed_credentials_through_the_hook_are_a_storage_error(tmp_path: Path) -> None:
    from airflow_savedmodel.errors import StorageError
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook

    hook = SavedModelHook(
        storage_options={"token": {"client_id": "id", "client_secret": "SECRET-ACCESS-VALUE"}}
    )
    with pytest.raises(StorageError, match="the credentials lack the field 'refresh_token'") as raised:
        hook.inspect("gs://bucket/m")
    assert "SECRET-ACCESS-VALUE" not in str(raised.value)


def test_a_store_that_never_answers_ends_in_a_typed_timeout(model: str, tmp_path: Path) -> None:
    """Behind a black hole (connections accepted, never answered), inspect, copy and publish end
    within the configured bound (read_timeout per attempt, gcsfs's 6 attempts and their backoff)
    in one line saying the store did not answer in time, instead of waiting forever. gcsfs's
    own account of its retries is printed only with --verbose."""
    import time

    from integration.servers import SilentServer

    hole = SilentServer()
    env = {**os.environ, "STORAGE_EMULATOR_HOST": hole.endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    limits = ["token=anon", "read_timeout=0.5", "connect_timeout=1"]
    commands = {
        "inspect": ["inspect", "gs://bucket/m", *[a for o in limits for a in ("-o", o)]],
        "copy": ["copy", model, "gs://bucket/copied", *[a for o in limits for a in ("--dst-option", o)]],
        "publish": [
            "publish",
            model,
            "gs://bucket/serving",
            *[a for o in limits for a in ("--dst-option", o)],
        ],
    }
    commands["verbose"] = ["--verbose", *commands["inspect"]]
    try:
        started = time.monotonic()
        running = {
            name: subprocess.Popen(
                [sys.executable, "-m", "airflow_savedmodel", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for name, args in commands.items()
        }
        for name, process in running.items():
            _, err = process.communicate(timeout=120)
            elapsed = time.monotonic() - started
            last = err.strip().splitlines()[-1]
            command = commands[name][1] if name == "verbose" else name
            assert process.returncode == 1, err
            assert last.startswith(f"savedmodel {command}: error: "), err
            assert commands[command][2 if command != "inspect" else 1] in last, err  # the store's URL
            assert "the store did not answer in time after" in last and "retries included" in last, err
            if name == "verbose":
                assert "savedmodel: gcsfs: _request out of retries on exception" in err, err
            else:
                assert err.strip().splitlines() == [last], f"one failure, one line: {err}"
            assert elapsed < 90, (name, elapsed)  # 6 x 0.5 s + about 36 s of gcsfs backoff, not forever
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
        hole.stop()


def test_a_sensors_poll_of_a_silent_store_ends_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deferred sensor's trigger: a poll against the black hole ends in a timeout within
    the bound, logged as a transient storage error naming the URL, and polling goes on."""
    import asyncio
    import time
    from typing import Any

    from airflow_savedmodel.triggers.savedmodel import SavedModelVersionTrigger

    from integration.servers import SilentServer

    hole = SilentServer()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", hole.endpoint)
    trigger = SavedModelVersionTrigger(
        "gs://bucket/serving",
        storage_options={"token": "anon", "read_timeout": 0.5, "connect_timeout": 1},
        poke_interval=1,
    )
    said: list[str] = []

    class Recorder:
        def info(self, message: str, *args: Any) -> None:
            said.append(message % args)

        warning = info

    monkeypatch.setattr(SavedModelVersionTrigger, "log", property(lambda self: Recorder()))

    async def first_poll() -> None:
        events = trigger.run().__aiter__()
        task = asyncio.ensure_future(events.__anext__())
        deadline = time.monotonic() + 120
        while not any("Transient storage error 1 in a row" in s for s in said):
            assert time.monotonic() < deadline, said
            assert not task.done(), task.result()
            await asyncio.sleep(0.5)
        task.cancel()

    try:
        started = time.monotonic()
        asyncio.run(first_poll())
        assert time.monotonic() - started < 120
        (line,) = [s for s in said if "Transient storage error 1 in a row" in s]
        assert "gs://bucket/serving: the store did not answer in time" in line, line
    finally:
        hole.stop()
