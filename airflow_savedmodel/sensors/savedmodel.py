"""Sensors that wait for a SavedModel or a new model version, in poke mode or deferred to the triggerer."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_savedmodel.deprecation import renamed, required


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _triggerer_renders_templates() -> bool:
    """Airflow 3.3's triggerer renders a started-from-trigger task's templated fields that the
    trigger has under the same name; earlier releases hand the trigger the raw template."""
    from importlib.metadata import version

    major, minor = (int(x) for x in version("apache-airflow-core").split(".")[:2])
    return (major, minor) >= (3, 3)


class _DeferrableSensor(BaseSensorOperator):
    """Poke once; if not done and deferrable, hand the wait to the trigger from ``_trigger()``."""

    deferrable: bool
    _last_waiting: str | None = None

    def _waiting(self, message: str, *args: Any) -> None:
        """Log what is still missing when it differs from the previous poke's (a wait of hours
        at a 5 s poke interval would otherwise write thousands of identical lines)."""
        text = message % args
        if text != self._last_waiting:
            self.log.info("%s", text)
            self._last_waiting = text

    def _trust(self) -> Any:
        """The trusted signers (``trusted_signers``, else the deployment's), loaded once."""
        if "_trust_cache" not in self.__dict__:
            from airflow_savedmodel.hooks.savedmodel import SavedModelHook

            hook = SavedModelHook(
                getattr(self, "savedmodel_conn_id", None), getattr(self, "storage_options", None)
            )
            self.__dict__["_trust_cache"] = hook.trust(getattr(self, "trusted_signers", None))
        return self.__dict__["_trust_cache"]

    def _signed(self) -> bool:
        return self._trust() is not None

    def _verified(self, found: dict[str, Any]) -> dict[str, Any]:
        """``found`` once its signature verifies (signatures required), with who signed it;
        a typed error naming the reason when it does not."""
        trust = self._trust()
        if trust is None:
            return found
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        hook = SavedModelHook(
            getattr(self, "savedmodel_conn_id", None), getattr(self, "storage_options", None)
        )
        result = hook.verify_signature(found["url"], trust)
        if not result.ok:
            raise result.error()
        self.log.info("%s is signed by %s", found["url"], result.signer)
        return {**found, "signed_by": result.signer}

    def _trigger(self) -> Any:
        raise NotImplementedError

    def _on_event(self, event: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _start_in_triggerer(
        self, wanted: bool, classpath: str, kwargs: dict[str, Any], renderable: set[str]
    ) -> None:
        """With ``wanted``, start the wait in the triggerer (``start_from_trigger``: no worker
        slot, not even for a first poke) where the arguments allow it: deferrable; no signature
        required (whether to wait for model.sig is decided in the worker, from connections and
        settings); every templated argument one the triggerer renders (``renderable``, Airflow
        3.3+). Otherwise the sensor pokes once in a worker and defers, as before."""
        if not wanted or not self.deferrable or getattr(self, "trusted_signers", None):
            return
        if conf.get("savedmodel", "require_signature", fallback=""):
            return
        templated = {name for name, value in kwargs.items() if _templated(value)}
        if templated and (not templated <= renderable or not _triggerer_renders_templates()):
            return
        from airflow.triggers.base import StartTriggerArgs

        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=classpath,
            trigger_kwargs=kwargs,
            next_method="execute_complete",
            next_kwargs=None,
            timeout=datetime.timedelta(seconds=self.timeout),
        )
        self.start_from_trigger = True

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if isinstance(first, PokeReturnValue):
            return first.xcom_value
        self.defer(
            trigger=self._trigger(),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=self.timeout),
        )
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event.get("status") != "success":
            message = f"{self.task_id}: waiting failed: {event.get('message')}"
            if self.soft_fail:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(message)
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(message)
        return self._on_event(event)


class SavedModelSensor(_DeferrableSensor):
    """Wait until a complete, valid SavedModel exists at ``model_url``.

    Complete means its manifest matches (models published by this provider) or, for models
    written by other tools, that it validates (saved_model.pb parses, variables and assets are
    intact). Pushes ``{"url", "state", "fingerprint"}``; each poke logs what is still missing.

    :param model_url: the SavedModel directory to wait for (templated).
    :param savedmodel_conn_id: connection for ``model_url`` (templated).
    :param storage_options: extra fsspec options, overriding the connection's.
    :param deep: also check every file's checksum against the manifest.
    :param trusted_signers: trusted signers (a PEM file's location): wait until the model is
        signed (model.sig), then verify it in the worker; a model that does not verify (a file
        changed, added or removed since it was signed, an untrusted signer) fails the task with
        the reason. Default the deployment's ``[savedmodel] require_signature`` (templated).
    :param deferrable: wait in the triggerer instead of a worker slot; default
        ``[operators] default_deferrable``.
    :param start_from_trigger: with ``deferrable``, start the wait in the triggerer: no worker
        slot at all until the model is there (for many waiting sensors). Taken where the
        arguments allow (no signature required; nothing templated but the watched URL, which
        Airflow 3.3's triggerer renders). Airflow shows no task log while such a task is
        deferred (it never ran on a worker) unless remote logging is configured; the wait's
        lines are in the triggerer's log.
    """

    template_fields: Sequence[str] = ("model_url", "savedmodel_conn_id", "trusted_signers")
    ui_color = "teal.300"

    @renamed(url="model_url", require_signature="trusted_signers")
    def __init__(
        self,
        *,
        model_url: str | None = None,
        savedmodel_conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        deep: bool = False,
        deferrable: bool | None = None,
        trusted_signers: str | None = None,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model_url = required(type(self).__name__, model_url=model_url)
        self.model_url = model_url
        self.savedmodel_conn_id = savedmodel_conn_id
        self.storage_options = storage_options
        self.deep = deep
        self.trusted_signers = trusted_signers
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._start_in_triggerer(
            start_from_trigger,
            "airflow_savedmodel.triggers.savedmodel.SavedModelTrigger",
            {
                "model_url": model_url,
                "savedmodel_conn_id": savedmodel_conn_id,
                "storage_options": storage_options,
                "deep": deep,
                "poke_interval": self.poke_interval,
                "signed": False,
            },
            renderable={"model_url"},
        )

    def _hook(self) -> Any:
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        return SavedModelHook(self.savedmodel_conn_id, self.storage_options)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        ready = self._hook().model_readiness(self.model_url, self.deep, self._signed())
        if not ready.done:
            self._waiting("No complete SavedModel at %s yet: %s", self.model_url, ready.waiting_for)
            return False
        found = self._verified(ready.found)
        self.log.info("SavedModel ready at %s", found["url"])  # as when the trigger finds it
        return PokeReturnValue(is_done=True, xcom_value=found)

    def _trigger(self) -> Any:
        from airflow_savedmodel.triggers.savedmodel import SavedModelTrigger

        return SavedModelTrigger(
            model_url=self.model_url,
            savedmodel_conn_id=self.savedmodel_conn_id,
            storage_options=self.storage_options,
            deep=self.deep,
            poke_interval=self.poke_interval,
            signed=self._signed(),
        )

    def _on_event(self, event: dict[str, Any]) -> Any:
        found = self._verified(event["model"])
        self.log.info("SavedModel ready at %s", found["url"])
        return found


class SavedModelVersionSensor(_DeferrableSensor):
    """Wait until ``base_path`` holds a complete version newer than ``newer_than`` (any, if None).

    Pushes the version's summary (``version``, ``url``, ``fingerprint``, ...); each poke logs
    the versions it saw and why none is complete yet.

    :param base_path: the serving base path (templated).
    :param newer_than: only a version above this number counts (templated).
    :param savedmodel_conn_id: connection for ``base_path`` (templated).
    :param storage_options: extra fsspec options, overriding the connection's.
    :param trusted_signers: trusted signers (a PEM file's location): only a version that is
        signed and verifies counts; one that does not verify is logged with the reason and
        passed over for a newer one. Default the deployment's ``[savedmodel] require_signature``
        (templated).
    :param deferrable: wait in the triggerer instead of a worker slot; default
        ``[operators] default_deferrable``.
    :param start_from_trigger: with ``deferrable``, start the wait in the triggerer: no worker
        slot at all until the model is there (for many waiting sensors). Taken where the
        arguments allow (no signature required; nothing templated but the watched URL, which
        Airflow 3.3's triggerer renders). Airflow shows no task log while such a task is
        deferred (it never ran on a worker) unless remote logging is configured; the wait's
        lines are in the triggerer's log.
    """

    template_fields: Sequence[str] = ("base_path", "newer_than", "savedmodel_conn_id", "trusted_signers")
    ui_color = "teal.300"

    @renamed(require_signature="trusted_signers")
    def __init__(
        self,
        *,
        base_path: str,
        newer_than: int | str | None = None,
        savedmodel_conn_id: str | None = None,
        storage_options: dict[str, Any] | None = None,
        deferrable: bool | None = None,
        trusted_signers: str | None = None,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_path = base_path
        self.newer_than = newer_than
        self.savedmodel_conn_id = savedmodel_conn_id
        self.storage_options = storage_options
        self.trusted_signers = trusted_signers
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self._refused_up_to: int | None = None  # the newest version that failed verification
        self._start_in_triggerer(
            start_from_trigger,
            "airflow_savedmodel.triggers.savedmodel.SavedModelVersionTrigger",
            {
                "base_path": base_path,
                "newer_than": newer_than if _templated(newer_than) else self._threshold(),
                "savedmodel_conn_id": savedmodel_conn_id,
                "storage_options": storage_options,
                "poke_interval": self.poke_interval,
                "signed": False,
            },
            renderable={"base_path"},
        )

    def _threshold(self) -> int | None:
        given = None if self.newer_than in (None, "", "None") else int(self.newer_than)
        if self._refused_up_to is None:
            return given
        return max(given if given is not None else -1, self._refused_up_to)

    def _verified_or_none(self, found: dict[str, Any]) -> dict[str, Any] | None:
        """``found`` if it verifies (see _verified); else None, the version passed over."""
        from airflow_savedmodel.errors import SignatureError

        try:
            return self._verified(found)
        except SignatureError as exc:
            self.log.warning("Version %s is not trusted, waiting for a newer one: %s", found["version"], exc)
            self._refused_up_to = int(found["version"])
            return None

    def poke(self, context: Any) -> bool | PokeReturnValue:
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        found = SavedModelHook(self.savedmodel_conn_id, self.storage_options).version_readiness(
            self.base_path, self._threshold(), self._signed()
        )
        if not found.done:
            self._waiting("Waiting for a complete version under %s: %s", self.base_path, found.waiting_for)
            return False
        verified = self._verified_or_none(found.found)  # type: ignore[arg-type]
        return False if verified is None else PokeReturnValue(is_done=True, xcom_value=verified)

    def _trigger(self) -> Any:
        from airflow_savedmodel.triggers.savedmodel import SavedModelVersionTrigger

        return SavedModelVersionTrigger(
            base_path=self.base_path,
            newer_than=self._threshold(),
            savedmodel_conn_id=self.savedmodel_conn_id,
            storage_options=self.storage_options,
            poke_interval=self.poke_interval,
            signed=self._signed(),
        )

    def _on_event(self, event: dict[str, Any]) -> Any:
        verified = self._verified_or_none(event["version"])
        if verified is None:  # passed over: wait (deferred again) for a newer version
            self.defer(trigger=self._trigger(), method_name="execute_complete")
        self.log.info("Version %s is complete at %s", event["version"]["version"], event["version"]["url"])
        return verified


class SavedModelServedSensor(_DeferrableSensor):
    """Wait until a running TensorFlow Serving reports a version AVAILABLE (REST
    ``GET /v1/models/{name}/versions/{N}``), so a pipeline knows its own version is served, not
    just published; against replicas, until every replica does. Fails with TF Serving's own
    error (and the replica's name) when the version ends in an error state (e.g. the loader
    refused it); a version a replica does not know yet is waited for.

    Pushes ``{"version", "state", "error_code", "error_message"}``, and ``replicas`` (each
    replica's status) when there are several.

    :param server_url: TF Serving's REST endpoint, e.g. ``http://tf-serving:8501``, a list of
        replicas' endpoints or ``dns+http://NAME:8501`` (see TFServingHook) (templated); or
        ``tf_serving_conn_id``.
    :param tf_serving_conn_id: an HTTP connection to TF Serving (behind a gateway: TLS, a CA
        bundle, headers such as a bearer token; see ``SavedModelHook.tf_serving_endpoint``).
    :param model_name: the model's name on the server (templated).
    :param version: the version to wait for, e.g. the publish task's XCom (templated); None with
        ``version_label`` waits for what the label names.
    :param version_label: a version label (``stable``, ``canary``) instead of a number (templated).
    :param deferrable: wait in the triggerer instead of a worker slot; default
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = (
        "server_url",
        "model_name",
        "version",
        "version_label",
        "tf_serving_conn_id",
    )
    ui_color = "teal.300"

    def __init__(
        self,
        *,
        server_url: str | list[str] | None = None,
        model_name: str,
        version: int | str | None = None,
        version_label: str | None = None,
        tf_serving_conn_id: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not server_url and not tf_serving_conn_id:
            raise ValueError("SavedModelServedSensor needs server_url or tf_serving_conn_id")
        self.tf_serving_conn_id = tf_serving_conn_id
        self.server_url, self.model_name = server_url, model_name
        self.version, self.version_label = version, version_label
        self.deferrable = _default_deferrable() if deferrable is None else deferrable

    def _version(self) -> int | None:
        return None if self.version in (None, "", "None") else int(str(self.version))

    def poke(self, context: Any) -> bool | PokeReturnValue:
        from airflow_savedmodel.hooks.tfserving import TFServingHook

        hook = TFServingHook(self.server_url or None, self.tf_serving_conn_id or None)
        return self._judge(hook.statuses(self.model_name, self._version(), self.version_label or None))

    def _judge(self, found: dict[str, Any]) -> bool | PokeReturnValue:
        from airflow_savedmodel.tfserving import VersionStatus

        statuses = {r: VersionStatus(**v) for r, v in found.items() if isinstance(v, dict)}
        for replica, status in sorted(statuses.items()):
            if status.failed:
                from airflow.sdk.exceptions import AirflowFailException

                where = self.server_url or self.tf_serving_conn_id
                if isinstance(where, list | tuple):
                    where = ", ".join(where)
                if len(found) > 1:
                    where = f"replica {replica} of {where}"
                raise AirflowFailException(
                    f"TF Serving at {where} reports {self.model_name} version {status.version} "
                    f"{status.state}: {status.error_code}: {status.error_message}"
                )
        wanted = self._version()
        if (
            found
            and len(statuses) == len(found)
            and all(s.available and wanted in (None, s.version) for s in statuses.values())
        ):
            first = next(iter(statuses.values())).to_json()
            if len(found) > 1:
                first["replicas"] = found
            return PokeReturnValue(is_done=True, xcom_value=first)
        from airflow_savedmodel.release.fleet import progress, waiting_text

        said = (
            progress(found, wanted)
            if wanted is not None
            else "; ".join(f"{r}: {waiting_text(v)}" for r, v in sorted(found.items()))
        )
        self._waiting("Waiting for %s on TF Serving: %s", self.model_name, said)
        return False

    def _trigger(self) -> Any:
        from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

        return SavedModelServedTrigger(
            server_url=self.server_url,
            model_name=self.model_name,
            version=self._version(),
            version_label=self.version_label or None,
            poke_interval=self.poke_interval,
            tf_serving_conn_id=self.tf_serving_conn_id,
        )

    def _on_event(self, event: dict[str, Any]) -> Any:
        done = self._judge(event.get("replicas") or {"TF Serving": event["served"]})
        if not isinstance(done, PokeReturnValue):  # the trigger fires only once it is AVAILABLE
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(
                f"{self.task_id}: the trigger fired before {self.model_name} was AVAILABLE"
            )
        self.log.info("%s version %s is AVAILABLE", self.model_name, event["served"]["version"])
        return done.xcom_value
