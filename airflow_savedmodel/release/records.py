"""Release records: what was decided about each version, and which rollout is in flight.

Records live beside the versions, under ``BASE/.savedmodel-releases/`` (TF Serving loads only
numeric children, and a version directory is never written after publish): ``<N>.json`` per
version, rewritten atomically as its rollout moves on (``baking`` -> ``promoted`` or
``rolled_back``), and, while a rollout runs, the ``active`` claim (taken with the same
create-if-absent primitive publish uses for version numbers) with ``active.json`` naming the
run, the version and the time by which it must have decided. The metrics recorded for the
``stable`` version are the baseline of the next rollout's metric gates. ``<N>.bake.json`` keeps
the last bake of version N request by request (for plots), apart from the record, so reading
every record of a long history stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.location import Location, write_atomic
from airflow_savedmodel.storage import leases

RECORDS_DIR = ".savedmodel-releases"
SCHEMA = "airflow-savedmodel/release/v1"


def _dir(base: Location) -> Location:
    return base.join(RECORDS_DIR)


def write(base: Location, record: dict[str, Any]) -> str:
    """Write (or rewrite) the record of ``record["version"]``; its URL."""
    target = _dir(base).join(f"{int(record['version'])}.json")
    location.makedirs(base.fs, _dir(base).path)
    write_atomic(
        base.fs, target.path, json.dumps({"schema": SCHEMA, **record}, indent=2, sort_keys=True).encode()
    )
    return str(target.url)


def earlier(base: Location, version: int, run_id: str) -> list[dict[str, Any]]:
    """The outcomes of earlier rollouts of ``version`` by other runs (a failed or rolled-back
    try before this one), oldest first, for the record that replaces them to keep: the history
    of a version is every rollout of it, not only the last."""
    previous = read(base, version)
    if previous is None or previous.get("run_id") == run_id or previous.get("state") in (None, "baking"):
        return list(previous.get("earlier") or []) if previous else []
    kept = list(previous.pop("earlier", None) or [])
    previous.pop("schema", None)
    return [*kept, previous]


def read(base: Location, version: int) -> dict[str, Any] | None:
    target = _dir(base).join(f"{int(version)}.json")
    try:
        return dict(json.loads(base.fs.cat_file(target.path)))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def history(base: Location) -> list[dict[str, Any]]:
    """Every version's record, oldest version first: one listing, then every record read in one
    batch (an object store's filesystem sends those requests at once)."""
    paths = []
    with contextlib.suppress(FileNotFoundError):
        base.fs.invalidate_cache(_dir(base).path)
        for entry in base.fs.ls(_dir(base).path, detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                paths.append(_dir(base).join(name).path)
    found = base.fs.cat(paths, on_error="omit") if paths else {}
    out = []
    for raw in found.values():
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError, TypeError):
            record = json.loads(raw)
            if isinstance(record, dict) and "version" in record:
                out.append(record)
    return sorted(out, key=lambda r: int(r.get("version", 0)))


def write_bake(base: Location, version: int, series: dict[str, Any]) -> str:
    """Keep the bake of ``version`` request by request (release.evidence.series); its URL."""
    target = _dir(base).join(f"{int(version)}.bake.json")
    location.makedirs(base.fs, _dir(base).path)
    write_atomic(base.fs, target.path, json.dumps({"schema": SCHEMA, **series}).encode())
    return str(target.url)


def read_bake(base: Location, version: int) -> dict[str, Any] | None:
    """The last bake of ``version`` (None: never baked, or baked before bakes were kept)."""
    try:
        found = json.loads(base.fs.cat_file(_dir(base).join(f"{int(version)}.bake.json").path))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return dict(found) if isinstance(found, dict) else None


@dataclass(frozen=True)
class Active:
    """The rollout in flight for a model: its claim token, run, version and deadline."""

    token: str
    run_id: str
    version: int
    started: float
    deadline: float

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "run_id": self.run_id,
            "version": self.version,
            "started": self.started,
            "deadline": self.deadline,
        }

    @property
    def expired(self) -> bool:
        return time.time() > self.deadline


def _active_paths(base: Location) -> tuple[str, str]:
    return _dir(base).join("active").path, _dir(base).join("active.json").path


def current(base: Location) -> Active | None:
    """The rollout in flight, if its claim and its description are both there."""
    claim, info = _active_paths(base)
    try:
        doc = json.loads(base.fs.cat_file(info))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not base.fs.exists(claim):
        return None
    return Active(
        str(doc["token"]),
        str(doc["run_id"]),
        int(doc["version"]),
        float(doc["started"]),
        float(doc["deadline"]),
    )


ORPHAN_CLAIM_SECONDS = 60.0


def orphan_claim(base: Location) -> bool:
    """Whether a claim is there without its description, for longer than a claimant needs to
    write one (the claimant died between the two writes): such a claim names no one to wait for."""
    claim, info = _active_paths(base)
    if base.fs.exists(info) or not base.fs.exists(claim):
        return False
    age = leases.age_seconds(base.fs, claim)
    return age is not None and age > ORPHAN_CLAIM_SECONDS


def clear_orphan(base: Location) -> None:
    claim, _ = _active_paths(base)
    with contextlib.suppress(FileNotFoundError, OSError):
        base.fs.rm(claim, recursive=True)


def take(base: Location, run_id: str, version: int, seconds: float) -> Active | None:
    """Claim the model's rollout for ``run_id``; None when another holds it."""
    claim, info = _active_paths(base)
    location.makedirs(base.fs, _dir(base).path)
    token = leases.new_token()
    if not leases.claim(base.fs, claim, token):
        return None
    now = time.time()
    active = Active(token, run_id, version, now, now + seconds)
    write_atomic(base.fs, info, json.dumps(active.to_json()).encode())
    return active


def give_up(base: Location, active: Active) -> None:
    """End the rollout in flight (``active``, or an abandoned one being taken over)."""
    claim, info = _active_paths(base)
    with contextlib.suppress(FileNotFoundError, OSError):
        base.fs.rm(info)
    if base.fs.exists(claim):
        leases.release(base.fs, claim, active.token)
        with contextlib.suppress(FileNotFoundError, OSError):  # an abandoned claim: token unknown to us
            base.fs.rm(claim, recursive=True)
