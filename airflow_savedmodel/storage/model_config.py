"""TensorFlow Serving's model config file (``--model_config_file``): read it, change it atomically.

A TF Serving started with ``--model_config_file`` and ``--model_config_file_poll_wait_seconds``
re-reads the file and, for a model whose ``model_version_policy`` is ``specific``, loads exactly
the listed versions that exist. Naming a version there only after it is completely copied and
verified is the one way to make a version appear atomically on an object store ("gated"
publish). Labels (``stable``, ``canary``, ...) map to versions in the same file.

Every change is one read-change-write under a lock (:func:`leases.exclusive`) ending in one
atomic write, so two writers never lose each other's update and TF Serving never reads half a
file. Versions are named only when they are complete under the model's base path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf import text_format

from airflow_savedmodel.errors import FormatError, NotFoundError, StorageError
from airflow_savedmodel.location import Location, write_atomic
from airflow_savedmodel.protos import serving_config_pb2 as pb
from airflow_savedmodel.signing.keys import Trust
from airflow_savedmodel.storage import leases, signed
from airflow_savedmodel.storage import versions as v

MODEL_PLATFORM = "tensorflow"
DEFAULT_KEEP_SERVED = 2
T = TypeVar("T")


@dataclass
class ServedModel:
    """One model of the config as plain data."""

    name: str
    base_path: str
    policy: str  # "latest", "all" or "specific"
    versions: list[int] = field(default_factory=list)  # the specific versions
    num_versions: int = 1  # with "latest"
    labels: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_path": self.base_path,
            "policy": self.policy,
            "versions": self.versions,
            "num_versions": self.num_versions,
            "labels": dict(sorted(self.labels.items())),
        }


def parse(text: str, where: str = "") -> pb.ModelServerConfig:
    config = pb.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise FormatError(f"not a TensorFlow Serving model config: {exc}", where) from None
    return config


def render(config: pb.ModelServerConfig) -> str:
    return text_format.MessageToString(config)


def read(config: Location, missing_ok: bool = True) -> pb.ModelServerConfig:
    """The config at ``config``; an empty one when the file does not exist yet (if ``missing_ok``)."""
    try:
        raw = config.fs.cat_file(config.path)
    except FileNotFoundError:
        if not missing_ok:
            raise NotFoundError("does not exist", config.url) from None
        return pb.ModelServerConfig()
    except IsADirectoryError:
        raise FormatError("is a directory, not a model config file", config.url) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("model config file is not UTF-8 text", config.url) from None
    return parse(text, config.url)


def describe(model: pb.ModelConfig) -> ServedModel:
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice") or "latest"
    return ServedModel(
        name=model.name,
        base_path=model.base_path,
        policy=choice,
        versions=sorted(int(n) for n in policy.specific.versions) if choice == "specific" else [],
        num_versions=(policy.latest.num_versions or 1) if choice == "latest" else 0,
        labels={k: int(n) for k, n in model.version_labels.items()},
    )


def models(config: pb.ModelServerConfig) -> list[ServedModel]:
    return [describe(m) for m in config.model_config_list.config]


def find(config: pb.ModelServerConfig, name: str) -> pb.ModelConfig | None:
    for model in config.model_config_list.config:
        if model.name == name:
            return model
    return None


LOCK_ATTEMPTS = 5


def update(
    config: Location, change: Callable[[pb.ModelServerConfig], T], *, waited: list[float] | None = None
) -> T:
    """Apply ``change`` to the config under the config's lock and write it back in one step.

    ``waited`` (if given) gets the seconds each acquisition of the lock queued behind other
    writers: what a fleet of publishers into one config pays for sharing it.

    A writer that stalled so long that another broke its lock finds out before writing
    (:meth:`leases.Held.check`) and applies its change again to what is there now, so neither
    update is lost.
    """
    if config.fs.isdir(config.path):
        raise FormatError("is a directory, not a model config file", config.url)
    for attempt in range(LOCK_ATTEMPTS):
        with leases.exclusive(config.fs, config.path + ".lock") as held:
            if waited is not None:
                waited.append(held.waited)
            current = read(config)
            before = current.SerializeToString(deterministic=True)
            result = change(current)
            if current.SerializeToString(deterministic=True) == before:
                return result
            try:
                held.check()
            except leases.LockLostError:
                if attempt == LOCK_ATTEMPTS - 1:
                    raise
                continue
            write_atomic(config.fs, config.path, render(current).encode())
            return result
    raise AssertionError("unreachable")


def _model(config: pb.ModelServerConfig, name: str, where: str) -> pb.ModelConfig:
    model = find(config, name)
    if model is None:
        raise NotFoundError(f"no model named {name!r} in the serving config", where)
    return model


def _require_complete(base: Location, numbers: Iterable[int], trust: Trust | None = None) -> None:
    """Refuse to name a version that is not complete, or (given ``trust``) does not verify: the
    one gate every change of the config goes through."""
    for number in sorted(set(numbers)):
        path = base.join(str(number))
        if not path.exists():
            raise NotFoundError(f"version {number} does not exist", path.url)
        state, _, problems = v.state_of(base.fs, path.path)
        if state != v.COMPLETE:
            detail = "; ".join(problems[:3]) if problems else "no manifest from this tool"
            raise StorageError(f"version {number} is {state}, not complete ({detail})", path.url)
        signed.require(path, trust)


def _set_specific(model: pb.ModelConfig, numbers: Iterable[int]) -> None:
    policy = model.model_version_policy
    policy.specific.ClearField("versions")
    policy.specific.versions.extend(sorted(set(numbers)))


def check_base(config: Location, name: str, base: Location, base_path: str | None = None) -> None:
    """Refuse to name versions under ``base`` for a model the config serves from another base
    path: TF Serving would look for them there (and load whatever that number holds)."""
    model = find(read(config), name)
    wanted = (base_path or base.url).rstrip("/")
    if model is not None and model.base_path.rstrip("/") != wanted:
        raise StorageError(
            f"model {name!r} is served from {model.base_path}, not {wanted}; publish there "
            "or name another model",
            config.url,
        )


def serve_version(
    config: Location,
    name: str,
    base: Location,
    version: int,
    *,
    base_path: str | None = None,
    keep_served: int = DEFAULT_KEEP_SERVED,
    labels: Mapping[str, int] | None = None,
    trust: Trust | None = None,
    waited: list[float] | None = None,
) -> ServedModel:
    """Name a complete ``version`` in the model's ``specific`` list (adding the model if new).

    The list keeps the newest ``keep_served`` versions plus every labelled one, so a rollback
    to the previous version finds it already loaded. ``base_path`` is the URL TF Serving reads
    (default: the base Location's URL).
    """
    if keep_served < 1:
        raise ValueError("keep_served must be at least 1")
    _require_complete(base, [version, *(labels or {}).values()], trust)
    check_base(config, name, base, base_path)

    def change(current: pb.ModelServerConfig) -> ServedModel:
        model = find(current, name)
        if model is None:
            model = current.model_config_list.config.add(
                name=name, base_path=base_path or base.url, model_platform=MODEL_PLATFORM
            )
        served = set(describe(model).versions) | {version}
        for label, number in (labels or {}).items():
            model.version_labels[label] = number
        pinned = set(model.version_labels.values())
        newest = sorted(served, reverse=True)[:keep_served]
        _set_specific(model, set(newest) | pinned)
        return describe(model)

    return update(config, change, waited=waited)


def set_labels(
    config: Location, name: str, base: Location, labels: Mapping[str, int], trust: Trust | None = None
) -> ServedModel:
    """Point each label at its version (each must be complete, and verify under ``trust``); the
    versions become served."""
    _require_complete(base, labels.values(), trust)

    def change(current: pb.ModelServerConfig) -> ServedModel:
        model = _model(current, name, config.url)
        for label, number in labels.items():
            model.version_labels[label] = int(number)
        _set_specific(model, set(describe(model).versions) | set(model.version_labels.values()))
        return describe(model)

    return update(config, change)


def promote(
    config: Location,
    name: str,
    base: Location,
    *,
    from_label: str = "canary",
    to_label: str = "stable",
    trust: Trust | None = None,
) -> ServedModel:
    """Point ``to_label`` at the version ``from_label`` names."""
    model = _model(read(config), name, config.url)
    if from_label not in model.version_labels:
        raise NotFoundError(f"model {name!r} has no label {from_label!r}", config.url)
    return set_labels(config, name, base, {to_label: int(model.version_labels[from_label])}, trust)


def rollback(
    config: Location,
    name: str,
    base: Location,
    *,
    label: str = "stable",
    version: int | None = None,
    trust: Trust | None = None,
) -> ServedModel:
    """Point ``label`` back at ``version``, by default the newest complete version below its current one."""
    model = _model(read(config), name, config.url)
    if version is None:
        current = model.version_labels.get(label)
        if current is None:
            raise NotFoundError(f"model {name!r} has no label {label!r} to roll back", config.url)
        older = [i.version for i in v.versions_of(base.fs, base.path) if i.state == v.COMPLETE]
        older = [n for n in older if n < int(current)]
        if not older:
            raise StorageError(f"no complete version below {current} to roll back to", base.url)
        version = max(older)
    return set_labels(config, name, base, {label: version}, trust)


def withdraw(config: Location, name: str, version: int, *, label: str = "canary") -> ServedModel:
    """Take a rejected ``version`` out of service: ``label`` removed if it names it, the version
    unlisted unless another label still names it. Other labels (``stable``) are untouched."""

    def change(current: pb.ModelServerConfig) -> ServedModel:
        model = _model(current, name, config.url)
        if model.version_labels.get(label) == int(version):
            del model.version_labels[label]
        if int(version) not in set(model.version_labels.values()):
            served = set(describe(model).versions) - {int(version)}
            if served or model.model_version_policy.HasField("specific"):
                _set_specific(model, served)
        return describe(model)

    return update(config, change)


LABEL_ACTIONS = ("set", "promote", "rollback")


def move_label(
    config: Location,
    name: str,
    resolve_base: Callable[[str], Location],
    *,
    action: str,
    label: str = "stable",
    version: int | None = None,
    from_label: str = "canary",
    trust: Trust | None = None,
) -> ServedModel:
    """One label change on the model ``name``: ``set`` ``label`` to ``version``, ``promote``
    (``label`` := ``from_label``'s version) or ``rollback`` (``label`` to ``version``, default the
    newest complete version below its current one). ``resolve_base`` turns the model's base path
    from the config into a Location (with the caller's credentials)."""
    if action not in LABEL_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(LABEL_ACTIONS)}, not {action!r}")
    base = resolve_base(_model(read(config, missing_ok=False), name, config.url).base_path)
    if action == "set":
        if version is None:
            raise ValueError("setting a label needs a version")
        return set_labels(config, name, base, {label: int(version)}, trust)
    if action == "promote":
        return promote(config, name, base, from_label=from_label, to_label=label, trust=trust)
    return rollback(config, name, base, label=label, version=version, trust=trust)


def named_versions(config: pb.ModelServerConfig, base_url: str) -> set[int]:
    """Versions the config serves or labels for any model whose base path is ``base_url``."""
    out: set[int] = set()
    for model in models(config):
        if model.base_path.rstrip("/") == base_url.rstrip("/"):
            out |= set(model.versions) | set(model.labels.values())
    return out


def served_version(
    base: Location, config: Location | None = None, name: str | None = None
) -> Location | None:
    """The version clients are served today: with TF Serving's model config, the version its
    ``stable`` label names, else the newest it lists; without, the newest complete version under
    ``base`` (what the default ``latest`` policy serves). None when there is none yet."""
    from airflow_savedmodel.storage import versions

    if config is not None and name:
        model = find(read(config), name)
        if model is not None:
            served = describe(model)
            number = served.labels.get("stable") or max(served.versions, default=None)
            if number is not None:
                return base.join(str(number))
    complete = [v for v in versions.versions_of(base.fs, base.path) if v.state == versions.COMPLETE]
    return base.join(str(complete[-1].version)) if complete else None
