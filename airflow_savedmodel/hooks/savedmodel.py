"""SavedModelHook: an Airflow connection plus a URL resolved to an fsspec filesystem, and the
format and storage operations on it (inspect, validate, strip, clear devices, copy, publish,
versions, gc, verify). All logic lives in ``airflow_savedmodel.format`` and ``.storage``."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseHook

from airflow_savedmodel.deprecation import renamed

if TYPE_CHECKING:
    from airflow_savedmodel.format.transforms import TransformResult
    from airflow_savedmodel.format.validate import Checks, Report
    from airflow_savedmodel.location import Location
    from airflow_savedmodel.release.evidence import Check
    from airflow_savedmodel.release.policy import Policy
    from airflow_savedmodel.release.rollout import InFlight, Plan, Result, Target
    from airflow_savedmodel.signing.keys import Signer, Trust
    from airflow_savedmodel.storage import CopyResult, GcResult, VersionInfo
    from airflow_savedmodel.storage.export import ExportResult, Warmup
    from airflow_savedmodel.storage.manifest import VerifyResult
    from airflow_savedmodel.storage.mirror import MirrorResult
    from airflow_savedmodel.storage.model_config import ServedModel
    from airflow_savedmodel.storage.publish import PublishResult, ServingTarget
    from airflow_savedmodel.storage.versions import Readiness
    from airflow_savedmodel.tfserving import Endpoint, Fleet, VersionStatus

F = TypeVar("F", bound=Callable[..., Any])
CONNECTION_TEST_SECONDS = 10.0  # the Test button answers within this, either way (15 s with the UI)

# Connection types whose credentials Airflow's own object-storage layer (ObjectStoragePath)
# turns into an authenticated filesystem when the google / amazon providers are installed.


# Keys of a connection's extra that are form fields of ours, not fsspec options.
CONNECTION_FIELDS = ("storage_options", "test_url")


def _extra(conn: Any) -> dict[str, Any]:
    """The connection's extra, with the form's ``extra__savedmodel__`` prefixes removed."""
    extra = dict(conn.extra_dejson) if conn is not None else {}
    return {key.removeprefix("extra__savedmodel__"): value for key, value in extra.items()}


def storage_options_from_connection(conn: Any) -> dict[str, Any]:
    """fsspec options from a ``savedmodel`` (or any generic) connection.

    The extra's ``storage_options`` object (or, without it, the rest of the extra) is passed to
    fsspec; ``login``/``password`` become ``key``/``secret`` (S3-style) when set.
    """
    extra = _extra(conn)
    if "storage_options" in extra:
        options = extra["storage_options"]
    else:
        options = {k: v for k, v in extra.items() if k not in CONNECTION_FIELDS}
    if isinstance(options, str):
        options = json.loads(options) if options else {}
    options = dict(options or {})
    if getattr(conn, "login", None):
        options.setdefault("key", conn.login)
    if getattr(conn, "password", None):
        options.setdefault("secret", conn.password)
    return options


def _asset_uri(url: str) -> str:
    """An Asset URI for a location: a local path as ``file://`` with its absolute path."""
    import os

    return url if "://" in url else "file://" + os.path.abspath(url)


def _typed_storage_errors(method: F) -> F:
    """A storage library's network or auth failure (gcsfs, s3fs, aiohttp, botocore) leaves the
    hook as a StorageError naming the URL it was about, on one line without credentials and
    without the library's traceback, which can carry tokens (``tokeninfo?access_token=...``)."""

    @functools.wraps(method)
    def wrapper(self: SavedModelHook, *args: Any, **kwargs: Any) -> Any:
        import time

        from airflow_savedmodel.errors import SavedModelError

        started = time.monotonic()
        try:
            return method(self, *args, **kwargs)
        except SavedModelError:
            raise
        except Exception as exc:
            from airflow_savedmodel import location

            if not location.is_storage_failure(exc):
                raise
            urls = [location.redact(a) for a in args[:2] if isinstance(a, str)]
            waited = time.monotonic() - started
            raise location.storage_error(exc, ", ".join(urls), self.secrets(), waited) from None

    return wrapper  # type: ignore[return-value]


def _baseline(compatible_with: str | None, hook: SavedModelHook, server: Endpoint | None = None) -> Any:
    """What export compares signatures with: "served" (resolved by storage), a running TF
    Serving's REST model URL (its metadata; through ``server``'s headers and TLS when given), or
    a model URL on ``hook``'s connection."""
    if not compatible_with:
        return None
    if compatible_with == "served":
        return "served"  # storage resolves it under the destination, with its serving config
    from airflow_savedmodel import tfserving
    from airflow_savedmodel.storage.baseline import model_to_compare

    if tfserving.is_model_url(compatible_with):
        return model_to_compare(compatible_with, server=server)
    return model_to_compare(hook.filesystem(compatible_with))


def mask_sensitive(options: dict[str, Any]) -> None:
    """Register secret-looking option values with Airflow's log masker, recursively."""
    from airflow.sdk.log import mask_secret

    from airflow_savedmodel.location import secret_values

    for value in secret_values(options):
        mask_secret(value)


def deployment_trust_source() -> str:
    """``[savedmodel] require_signature``: the trusted signers' PEM file for the whole
    deployment (``AIRFLOW__SAVEDMODEL__REQUIRE_SIGNATURE``); empty when signatures are optional."""
    from airflow.sdk import conf

    return str(conf.get("savedmodel", "require_signature", fallback="") or "").strip()


def signer_from_connection(conn_id: str) -> Signer:
    """The signing key in an Airflow connection (any type; a secrets backend works the same):
    the PEM private key in its password (or extra ``private_key``), extra ``certificate_chain``
    (PEM, the signing certificate first) for the certificate method, ``key_password`` for an
    encrypted key and ``shard_size`` (bytes) to sign files in shards (OMS "shards"; default:
    each file whole). Every part is masked in logs; errors name the connection, never the key."""
    from airflow.sdk.log import mask_secret

    from airflow_savedmodel.errors import SignatureError
    from airflow_savedmodel.signing.keys import Signer

    conn = BaseHook.get_connection(conn_id)
    extra = dict(conn.extra_dejson or {})
    pem = conn.password or extra.get("private_key")
    if not pem:
        raise SignatureError(
            "no private key (the password, or extra private_key, holds the PEM)", f"connection {conn_id!r}"
        )
    password = extra.get("key_password")
    for secret in (pem, password):
        if secret:
            mask_secret(secret)
    return Signer.from_pem(
        pem,
        password=password,
        certificate_chain=extra.get("certificate_chain"),
        where=f"connection {conn_id!r}",
        shard_size=_shard_size(extra.get("shard_size"), conn_id),
    )


def _shard_size(value: Any, conn_id: str) -> int | None:
    """A connection's extra ``shard_size`` (a number, or its text as the UI stores it)."""
    from airflow_savedmodel.errors import SignatureError

    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise SignatureError(
            f"extra shard_size must be a number of bytes, not {value!r}", f"connection {conn_id!r}"
        ) from None


class SavedModelHook(BaseHook):
    """Resolve URLs with an optional Airflow connection and run SavedModel operations on them.

    :param savedmodel_conn_id: a ``savedmodel`` connection whose extra holds fsspec storage
        options, or a ``google_cloud_platform`` / ``aws`` connection used through Airflow's
        object storage; None uses the environment's default credentials.
    :param storage_options: extra fsspec options, overriding the connection's.
    """

    conn_name_attr = "savedmodel_conn_id"
    default_conn_name = "savedmodel_default"
    conn_type = "savedmodel"
    hook_name = "TensorFlow SavedModel storage"

    def __init__(
        self, savedmodel_conn_id: str | None = None, storage_options: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.savedmodel_conn_id = savedmodel_conn_id
        self.extra_options = dict(storage_options or {})

    @cached_property
    def connection(self) -> Any | None:
        return self.get_connection(self.savedmodel_conn_id) if self.savedmodel_conn_id else None

    def secrets(self) -> list[str]:
        """Credential values of this hook's options, which no message may repeat."""
        from airflow_savedmodel.location import secret_values

        return secret_values({**storage_options_from_connection(self.connection), **self.extra_options})

    def filesystem(self, url: str) -> Location:
        """``url`` resolved with this hook's connection: the authenticated fsspec filesystem and
        the path on it (unpacks as ``fs, path``), with a printable URL.

        :param url: any location (a path or any fsspec URL).
        """
        from airflow_savedmodel import location, schemes

        conn = self.connection
        if conn is not None and (conn.conn_type or "") in schemes.of_url(url).conn_types:
            from airflow.sdk import ObjectStoragePath

            fs = ObjectStoragePath(url, conn_id=self.savedmodel_conn_id).fs
            return location.resolve(url, fs=fs)
        options = {
            **(storage_options_from_connection(conn) if conn is not None else {}),
            **self.extra_options,
        }
        mask_sensitive(options)
        return location.resolve(url, options)

    async def afilesystem(self, url: str) -> Location:
        """:meth:`filesystem` for triggers: the connection is fetched with Airflow's async API,
        the rest (which may build clients) runs in a worker thread.

        :param url: any location (a path or any fsspec URL).
        """
        import asyncio

        if self.savedmodel_conn_id and "connection" not in self.__dict__:
            self.__dict__["connection"] = await self.aget_connection(self.savedmodel_conn_id)
        return await asyncio.to_thread(self.filesystem, url)

    def _lineage(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        """What a call read and wrote, for Airflow's hook lineage collector (OpenLineage reads it):
        a task that calls the hook directly (TaskFlow) reports lineage as the operators do."""
        from airflow.sdk.lineage import get_hook_lineage_collector

        from airflow_savedmodel import location

        collector = get_hook_lineage_collector()
        for url in inputs:
            collector.add_input_asset(context=self, uri=_asset_uri(location.redact(url)))
        for url in outputs:
            collector.add_output_asset(context=self, uri=_asset_uri(location.redact(url)))

    @renamed(url="test_url")
    def test_connection(self, test_url: str | None = None) -> tuple[bool, str]:
        """The UI's Test button: list ``test_url`` (default: the connection's Test URL) with this
        connection's credentials. The message names the (redacted) URL and never a secret.

        :param test_url: the directory to list (default: the connection's Test URL).
        """
        import queue
        import threading

        from airflow_savedmodel import location

        test_url = test_url or _extra(self.connection).get("test_url")
        if not test_url:
            return False, "set the connection's Test URL (a directory it can list) to test it"
        answers: queue.Queue[tuple[bool, str]] = queue.Queue()

        def listing() -> None:
            try:
                where = self.filesystem(str(test_url))
                entries = where.fs.ls(where.path, detail=False)
            except Exception as exc:
                problem = location.scrub(f"{type(exc).__name__}: {exc}", self.secrets())
                answers.put((False, f"{location.redact(str(test_url))}: {problem}"))
            else:
                answers.put((True, f"listed {len(entries)} entries at {where.url}"))

        # The UI waits on this answer: a store that does not answer (a bucket behind a firewall,
        # credentials looked up on a metadata server that is not there) is reported within the
        # deadline while the storage library's retries go on in the background.
        threading.Thread(target=listing, name="savedmodel-connection-test", daemon=True).start()
        try:
            return answers.get(timeout=CONNECTION_TEST_SECONDS)
        except queue.Empty:
            return False, (
                f"{location.redact(str(test_url))}: no answer within {CONNECTION_TEST_SECONDS:g} s: the store, or the "
                "service its credentials come from, is not reachable from the API server"
            )

    @renamed(require_signature="trusted_signers")
    def trust(self, trusted_signers: str | None = None) -> Trust | None:
        """The signers to trust: the PEM file at ``trusted_signers`` (read with this hook's
        connection), else the deployment's ``[savedmodel] require_signature``; None when
        neither is set (signatures not required).

        :param trusted_signers: a PEM file of trusted signers (PUBLIC KEY and CERTIFICATE blocks).
        """
        source = (trusted_signers or "").strip() or deployment_trust_source()
        if not source:
            return None
        from airflow_savedmodel.storage.signed import load_trust

        return load_trust(self.filesystem(source))

    @renamed(url="model_url")
    @_typed_storage_errors
    def verify_signature(self, model_url: str, trust: Trust) -> Any:
        """The model at ``model_url`` against its OMS signature (storage.signed.check).

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        """
        from airflow_savedmodel.storage import signed

        return signed.check(self.filesystem(model_url), trust)

    # ---- format ------------------------------------------------------------------------------

    @renamed(url="model_url")
    @_typed_storage_errors
    def inspect(self, model_url: str, tag_set: str | None = None) -> dict[str, Any]:
        """What ``savedmodel inspect --json`` prints: tag sets, signatures, variables, assets.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param tag_set: one meta graph, as comma-separated tags (default: every meta graph).
        """
        from airflow_savedmodel.format import describe
        from airflow_savedmodel.format.model import SavedModel

        fs, path = self.filesystem(model_url)
        with SavedModel.open(path, fs=fs) as model:
            return describe.describe(model, tag_set)

    @renamed(url="model_url")
    @_typed_storage_errors
    def validate(self, model_url: str, checks: Checks | None = None, **options: Any) -> Report:
        """Validate the model at ``model_url`` with ``checks`` (or validate's keyword ``options``).

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param checks: what to check (format.validate.Checks); default from ``options``.
        """
        from airflow_savedmodel.format.validate import Checks

        return (checks or Checks(**options)).run(self.filesystem(model_url))

    @renamed(src="model_url", dst="destination_url")
    @_typed_storage_errors
    def rewrite(
        self,
        model_url: str,
        destination_url: str,
        rewrites: Sequence[str],
        *,
        overwrite: bool = False,
        dst_hook: SavedModelHook | None = None,
    ) -> TransformResult:
        """Write ``model_url`` to ``destination_url`` with ``rewrites`` ("clear_devices", "strip_default_attrs",
        "add_default_attrs") applied in one pass; ``destination_url`` is on ``dst_hook``'s connection.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param destination_url: where the model is written; on ``dst_hook``'s connection.
        :param rewrites: rewrite names (format.transforms.REWRITES), applied in that order.
        :param overwrite: replace an existing destination.
        :param dst_hook: the hook of the destination's connection (default: this one).
        """
        from airflow_savedmodel.format import transforms

        result = transforms.rewrite(
            model_url,
            destination_url,
            list(rewrites),
            overwrite=overwrite,
            src_fs=self.filesystem(model_url).fs,
            dst_fs=(dst_hook or self).filesystem(destination_url).fs,
        )
        self._lineage([model_url], [destination_url])
        return result

    @renamed(src="model_url", dst="destination_url")
    def strip_default_attrs(
        self,
        model_url: str,
        destination_url: str,
        *,
        add: bool = False,
        overwrite: bool = False,
        dst_hook: SavedModelHook | None = None,
    ) -> TransformResult:
        """``model_url`` written to ``destination_url`` without default-valued attrs (with ``add``: all filled in).

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param destination_url: where the model is written; on ``dst_hook``'s connection.
        :param add: fill default-valued attrs in instead of removing them.
        :param overwrite: replace an existing destination.
        :param dst_hook: the hook of the destination's connection (default: this one).
        """
        change = "add_default_attrs" if add else "strip_default_attrs"
        return self.rewrite(model_url, destination_url, [change], overwrite=overwrite, dst_hook=dst_hook)

    @renamed(src="model_url", dst="destination_url")
    def clear_devices(
        self,
        model_url: str,
        destination_url: str,
        *,
        overwrite: bool = False,
        dst_hook: SavedModelHook | None = None,
    ) -> TransformResult:
        """``model_url`` written to ``destination_url`` with every node's device placement cleared.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param destination_url: where the model is written; on ``dst_hook``'s connection.
        :param overwrite: replace an existing destination.
        :param dst_hook: the hook of the destination's connection (default: this one).
        """
        return self.rewrite(
            model_url, destination_url, ["clear_devices"], overwrite=overwrite, dst_hook=dst_hook
        )

    # ---- storage -----------------------------------------------------------------------------

    @renamed(src="model_url", dst="destination_url")
    @_typed_storage_errors
    def copy(
        self,
        model_url: str,
        destination_url: str,
        *,
        dst_hook: SavedModelHook | None = None,
        progress: Callable[[Any], None] | None = None,
        overwrite: bool = False,
        concurrency: int = 8,
    ) -> CopyResult:
        """Copy the whole model at ``model_url`` to ``destination_url`` (on ``dst_hook``'s connection), verified.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param destination_url: where the model is written; on ``dst_hook``'s connection.
        :param dst_hook: the hook of the destination's connection (default: this one).
        :param progress: called with the bytes copied so far.
        :param overwrite: replace an existing destination.
        :param concurrency: files copied at once.
        """
        from airflow_savedmodel.storage import copy

        result = copy(
            self.filesystem(model_url),
            (dst_hook or self).filesystem(destination_url),
            progress=progress,
            overwrite=overwrite,
            concurrency=concurrency,
        )
        self._lineage([model_url], [destination_url])
        return result

    @renamed(src="model_url", base="base_path", labels="version_labels")
    @_typed_storage_errors
    def publish(
        self,
        model_url: str,
        base_path: str,
        *,
        version: int | str = "auto",
        overwrite: bool = False,
        concurrency: int = 8,
        dst_hook: SavedModelHook | None = None,
        progress: Callable[[Any], None] | None = None,
        serving_config: str | None = None,
        model_name: str | None = None,
        version_labels: Sequence[str] = (),
        keep_served: int = 2,
        signer: Signer | None = None,
        trust: Trust | None = None,
    ) -> PublishResult:
        """Publish ``model_url`` as the next version under ``base_path``; with ``serving_config`` (TF
        Serving's model config file, on the destination's connection) the version is named there
        only once it is complete (gated publish). ``signer`` signs the version before it is
        visible; with ``trust`` a signed source must verify.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param version: the version: a number, or ``auto`` (the next one).
        :param overwrite: replace an existing destination.
        :param concurrency: files copied at once.
        :param dst_hook: the hook of the destination's connection (default: this one).
        :param progress: called with the bytes copied so far.
        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param version_labels: labels to point at the version once it is named.
        :param keep_served: how many newest versions the config keeps listed.
        :param signer: signs the version (model.sig) before it becomes visible.
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        """
        from airflow_savedmodel.storage import publish

        dst = dst_hook or self
        result = publish(
            self.filesystem(model_url),
            dst.filesystem(base_path),
            version=version,
            overwrite=overwrite,
            concurrency=concurrency,
            progress=progress,
            serving=dst._serving_target(serving_config, model_name, version_labels, keep_served, trust),
            signer=signer,
            trust=trust,
        )
        self._lineage([model_url], [result.url])
        return result

    @renamed(base="base_path", mirror_base="mirror_base_path")
    @_typed_storage_errors
    def mirror(
        self,
        base_path: str,
        mirror_base_path: str,
        *,
        dst_hook: SavedModelHook | None = None,
        newest_only: bool = False,
        concurrency: int = 8,
        progress_for: Callable[[int], Any] | None = None,
        trust: Trust | None = None,
        versions: Collection[int] | None = None,
    ) -> MirrorResult:
        """Publish to ``mirror_base_path`` (on ``dst_hook``'s connection) every complete version under
        ``base_path`` that the mirror lacks, under the same numbers (see storage/mirror.py); with
        ``trust``, only versions that verify; with ``versions``, only those numbers.

        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param mirror_base_path: the mirror's base path, on ``dst_hook``'s connection.
        :param dst_hook: the hook of the destination's connection (default: this one).
        :param newest_only: mirror only the newest complete version.
        :param concurrency: files copied at once.
        :param progress_for: the progress callback for each version mirrored.
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        :param versions: mirror only these version numbers (default: every complete one it lacks).
        """
        from airflow_savedmodel.storage.mirror import mirror

        result = mirror(
            self.filesystem(base_path),
            (dst_hook or self).filesystem(mirror_base_path),
            newest_only=newest_only,
            concurrency=concurrency,
            progress_for=progress_for,
            trust=trust,
            versions=versions,
        )
        self._lineage(
            [f"{base_path.rstrip('/')}/{r.version}" for r in result.mirrored],
            [r.url for r in result.mirrored],
        )
        return result

    @renamed(src="model_url", base="base_path", labels="version_labels")
    @_typed_storage_errors
    def export(
        self,
        model_url: str,
        base_path: str,
        *,
        rewrites: Sequence[str] = (),
        checks: Checks | None = None,
        version: int | str = "auto",
        dst_hook: SavedModelHook | None = None,
        progress: Callable[[Any], None] | None = None,
        serving_config: str | None = None,
        model_name: str | None = None,
        version_labels: Sequence[str] = (),
        keep_served: int = 2,
        warmup: Warmup | None = None,
        compatible_with: str | None = None,
        on_report: Callable[[Report], None] | None = None,
        tf_serving: Endpoint | None = None,
        signer: Signer | None = None,
        trust: Trust | None = None,
    ) -> ExportResult:
        """Rewrite ``model_url`` in memory (``rewrites``: "clear_devices", "strip_default_attrs"),
        add ``warmup`` requests, validate the result with ``checks`` and publish it under
        ``base_path`` when valid, in one pass: only the rewritten protos pass through this worker
        when ``model_url`` and ``base_path`` are in the same object store (see storage/export.py).

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param rewrites: rewrite names (format.transforms.REWRITES), applied in that order.
        :param checks: what to check (format.validate.Checks); default from ``options``.
        :param version: the version: a number, or ``auto`` (the next one).
        :param dst_hook: the hook of the destination's connection (default: this one).
        :param progress: called with the bytes copied so far.
        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param version_labels: labels to point at the version once it is named.
        :param keep_served: how many newest versions the config keeps listed.
        :param warmup: warmup requests to add (storage.export.Warmup).
        :param compatible_with: ``served``, a model URL, or a Baseline whose clients must keep working.
        :param on_report: sees the validation report before anything is copied.
        :param tf_serving: the TF Serving hook, for ``compatible_with`` a running server.
        :param signer: signs the version (model.sig) before it becomes visible.
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        """
        from airflow_savedmodel.storage.export import export

        dst = dst_hook or self
        result = export(
            self.filesystem(model_url),
            dst.filesystem(base_path),
            rewrites=rewrites,
            checks=checks,
            version=version,
            progress=progress,
            serving=dst._serving_target(serving_config, model_name, version_labels, keep_served, trust),
            warmup=warmup,
            compatible_with=_baseline(compatible_with, dst, tf_serving),
            on_report=on_report,
            signer=signer,
            trust=trust,
        )
        self._lineage([model_url], [result.published.url] if result.published else [])
        return result

    @renamed(url="inputs_url")
    @_typed_storage_errors
    def warmup_inputs(self, inputs_url: str) -> dict[str, Any]:
        """The arrays of the .npz file at ``inputs_url`` (warmup request inputs).

        :param inputs_url: an .npz file of request inputs.
        """
        from airflow_savedmodel.format import warmup

        return warmup.load_inputs(*self.filesystem(inputs_url))

    @renamed(url="model_url", signature="signature_name", count="warmup_count", tags="tag_set")
    @_typed_storage_errors
    def write_warmup(
        self,
        model_url: str,
        inputs: Mapping[str, Any],
        *,
        signature_name: str = "serving_default",
        warmup_count: int = 1,
        tag_set: str = "serve",
        model_name: str = "",
        overwrite: bool = False,
    ) -> str:
        """Write warmup requests into the model at ``model_url`` (assets.extra/tf_serving_warmup_requests,
        one atomic write) after checking ``inputs`` against the signature; return the file's URL.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param inputs: request inputs, one array per signature input.
        :param signature_name: the SignatureDef the requests call.
        :param warmup_count: how many warmup records to write (1 to 1000).
        :param tag_set: the meta graph, as comma-separated tags (default: every meta graph).
        :param model_name: the model's name in that file.
        :param overwrite: replace an existing destination.
        """
        from airflow_savedmodel.format import warmup

        return warmup.write_into(
            self.filesystem(model_url),
            inputs,
            signature=signature_name,
            count=warmup_count,
            tags=tag_set,
            model_name=model_name,
            overwrite=overwrite,
        )

    def _serving_target(
        self,
        serving_config: str | None,
        model_name: str | None,
        labels: Sequence[str],
        keep_served: int,
        trust: Trust | None = None,
    ) -> ServingTarget | None:
        """TF Serving's model config file on this hook's connection, for a gated publish."""
        if not serving_config:
            return None
        if not model_name:
            raise ValueError("serving_config needs model_name")
        from airflow_savedmodel.storage.publish import ServingTarget

        return ServingTarget(
            self.filesystem(serving_config),
            model_name,
            labels=tuple(label for label in labels if label),
            keep_served=keep_served,
            trust=trust,
        )

    @renamed(label="version_label")
    @_typed_storage_errors
    def serving_labels(
        self,
        serving_config: str,
        model_name: str,
        *,
        action: str,
        version_label: str = "stable",
        version: int | None = None,
        from_label: str = "canary",
        trust: Trust | None = None,
    ) -> ServedModel:
        """Change a label in TF Serving's model config (see ``storage.model_config.move_label``);
        the config and the model's base path are read with this hook's connection. With
        ``trust`` the version the label moves to must verify.

        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param action: ``set``, ``promote`` or ``rollback``.
        :param version_label: the label to move.
        :param version: the version: a number, or ``auto`` (the next one).
        :param from_label: with ``promote``, the label whose version it takes.
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        """
        from airflow_savedmodel.storage import model_config

        return model_config.move_label(
            self.filesystem(serving_config),
            model_name,
            self.filesystem,
            action=action,
            label=version_label,
            version=version,
            from_label=from_label,
            trust=trust,
        )

    @renamed(base="base_path")
    @_typed_storage_errors
    def versions(self, base_path: str, deep: bool = False) -> list[VersionInfo]:
        """Every numeric version under ``base_path``, oldest first, with its state.

        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param deep: also read every file and check its checksum.
        """
        from airflow_savedmodel.storage import list_versions

        return list_versions(self.filesystem(base_path), deep=deep)

    @renamed(base="base_path", min_age="min_age_seconds")
    @_typed_storage_errors
    def gc(
        self,
        base_path: str,
        *,
        keep_last: int = 5,
        min_age_seconds: float = 0,
        keep: Sequence[int] = (),
        dry_run: bool = False,
        serving_config: str | None = None,
    ) -> GcResult:
        """Retention under ``base_path``: keep the newest ``keep_last`` servable versions, ``keep``,
        and every version ``serving_config`` names; remove the rest (see storage/retention.py).

        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param keep_last: how many newest servable versions to keep.
        :param min_age_seconds: never remove anything younger.
        :param keep: versions always kept.
        :param dry_run: only say what would be removed.
        :param serving_config: TF Serving's model config file: gate the version through it.
        """
        from airflow_savedmodel.storage import gc

        return gc(
            self.filesystem(base_path),
            keep_last=keep_last,
            min_age=min_age_seconds,
            keep=keep,
            dry_run=dry_run,
            serving_config_url=self.filesystem(serving_config) if serving_config else None,
        )

    @renamed(url="model_url")
    @_typed_storage_errors
    def verify(self, model_url: str, deep: bool = True) -> VerifyResult:
        """Check the model at ``model_url`` against its manifest (every checksum when ``deep``).

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param deep: also read every file and check its checksum.
        """
        from airflow_savedmodel.storage import verify

        return verify(self.filesystem(model_url), deep=deep)

    # ---- readiness (sensors and triggers) ----------------------------------------------------

    @renamed(url="model_url")
    @_typed_storage_errors
    def model_readiness(self, model_url: str, deep: bool = False, signed: bool = False) -> Readiness:
        """Whether a complete, valid SavedModel is at ``model_url`` (with ``signed``: and model.sig),
        and if not, what is missing.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param deep: also read every file and check its checksum.
        :param signed: also wait for the signature (model.sig).
        """
        from airflow_savedmodel.storage import versions

        return versions.model_readiness(*self.filesystem(model_url), deep, signed)

    @renamed(base="base_path")
    @_typed_storage_errors
    def version_readiness(self, base_path: str, newer_than: int | None, signed: bool = False) -> Readiness:
        """The newest complete version above ``newer_than`` under ``base_path`` (with ``signed``: one
        that has model.sig), or what is missing.

        :param base_path: the serving base path (TF Serving's ``base_path``).
        :param newer_than: only versions above this number.
        :param signed: also wait for the signature (model.sig).
        """
        from airflow_savedmodel.storage import versions

        return versions.newer_version_readiness(*self.filesystem(base_path), newer_than, signed)

    @staticmethod
    def tf_serving_endpoint(server_url: str | None = None, conn_id: str | None = None) -> Endpoint:
        """Deprecated: ``TFServingHook(server_url, tf_serving_conn_id).endpoint()``."""
        import warnings

        from airflow_savedmodel.hooks.tfserving import TFServingHook

        warnings.warn(
            "SavedModelHook.tf_serving_endpoint is deprecated; use TFServingHook(server_url, "
            "tf_serving_conn_id).endpoint()",
            DeprecationWarning,
            stacklevel=2,
        )
        return TFServingHook(server_url, conn_id).endpoint()

    def release_target(self, serving_config: str, model_name: str, trust: Trust | None = None) -> Target:
        """The model being released: its config, name and base path, on this hook's connection;
        with ``trust``, the signers its candidates must be signed by.

        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param trust: the signers the signature must verify against (from :meth:`trust`).
        """
        from airflow_savedmodel.release.rollout import target_for

        return target_for(self.filesystem(serving_config), model_name, self.filesystem, trust)

    def rollout_plan(
        self, serving_config: str, model_name: str, policy: dict[str, Any] | str | None = None
    ) -> Plan:
        """What a rollout task works from, read once and passed to each step: the policy parsed
        (a PolicyError names what is wrong before anything changes), the signers it requires
        and the model's entry in the config.

        :param serving_config: TF Serving's model config file.
        :param model_name: the model's name in that file.
        :param policy: the rollout policy: a dict, JSON text or a JSON/YAML file's URL (default:
            the documented defaults).
        """
        from airflow_savedmodel.release.policy import load
        from airflow_savedmodel.release.rollout import Plan

        parsed = load(policy)
        return Plan(self.release_target(serving_config, model_name, self.policy_trust(parsed)), parsed)

    @_typed_storage_errors
    def begin_rollout(
        self,
        plan: Plan,
        version: int,
        endpoint: Endpoint | Fleet,
        *,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
    ) -> InFlight:
        """Claim the model's rollout and name the candidate in the config (release.rollout.begin).

        :param plan: the rollout's target and policy (:meth:`rollout_plan`).
        :param version: the candidate version.
        :param endpoint: TF Serving, one server or its replicas (TFServingHook.fleet).
        :param run_id: names the rollout (the same id resumes it).
        :param metrics: the candidate's metrics, gated by the policy.
        """
        from airflow_savedmodel.release.rollout import InFlight, begin

        active, stable = begin(plan.target, version, endpoint, plan.policy, run_id=run_id, metrics=metrics)
        return InFlight(active, stable)

    @renamed(signature="signature_name")
    @_typed_storage_errors
    def finish_rollout(
        self,
        plan: Plan,
        in_flight: InFlight,
        *,
        available: Check,
        endpoint: Endpoint | Fleet,
        inputs_url: str | None = None,
        signature_name: str = "serving_default",
        metrics: Mapping[str, float] | None = None,
        hold_for_approval: bool = False,
    ) -> Result:
        """Label, bake, judge and decide once the wait for TF Serving ended (``available``:
        the check it gave: passing, or failing with TF Serving's error or the timeout); with
        ``hold_for_approval`` passing evidence waits for :meth:`conclude_rollout`.

        :param plan: the rollout's target and policy (:meth:`rollout_plan`).
        :param in_flight: the rollout (from :meth:`begin_rollout` or :meth:`rollout_state`).
        :param available: the check the wait for TF Serving gave.
        :param endpoint: TF Serving, one server or its replicas (TFServingHook.fleet).
        :param inputs_url: an .npz file of request inputs.
        :param signature_name: the SignatureDef the requests call.
        :param metrics: the candidate's metrics, gated by the policy.
        :param hold_for_approval: hold passing evidence for a person.
        """
        from airflow_savedmodel.errors import SavedModelError
        from airflow_savedmodel.release import traffic
        from airflow_savedmodel.release.rollout import finish, stopped_before_bake

        target, active, stable = plan.target, in_flight.active, in_flight.stable
        try:
            inputs = self.warmup_inputs(inputs_url) if inputs_url else None
            requests = traffic.for_version(target.base.join(str(active.version)), inputs, signature_name)
        except SavedModelError as exc:  # inputs or warmup file unreadable: nothing to bake with
            return stopped_before_bake(target, active, [available], stable_before=stable, reason=str(exc))
        return finish(
            target,
            active,
            stable=stable,
            available=available,
            endpoint=endpoint,
            policy=plan.policy,
            requests=requests,
            metrics=metrics,
            hold_for_approval=hold_for_approval,
        )

    def rollout_refused(
        self, serving_config: str, model_name: str, version: int, run_id: str, reason: str
    ) -> None:
        """Record why a rollout of ``version`` ended before it changed anything (best effort:
        a config or base path that cannot be read has nowhere to keep it).

        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param version: the version: a number, or ``auto`` (the next one).
        :param run_id: names the rollout (the same id resumes it).
        :param reason: why the rollout ended.
        """
        from airflow_savedmodel.errors import SavedModelError
        from airflow_savedmodel.release.rollout import refused

        with contextlib.suppress(SavedModelError):
            refused(self.release_target(serving_config, model_name), version, run_id, reason)

    def policy_trust(self, policy: Policy) -> Trust | None:
        """The signers a rollout requires: the policy's ``require_signature``, else the deployment's.

        :param policy: the rollout policy (release.policy.Policy).
        """
        return self.trust(policy.doc.get("require_signature"))

    def rollout_unchanged(self, plan: Plan, version: int) -> Result | None:
        """A result when ``version`` is already stable (nothing to release), else None.

        :param plan: the rollout's target and policy (:meth:`rollout_plan`).
        :param version: the candidate version.
        """
        from airflow_savedmodel.release.rollout import unchanged

        return unchanged(plan.target, version)

    def rollout_state(self, plan: Plan, version: int) -> InFlight:
        """The rollout of ``version`` in flight: its claim and the stable version it started from.

        :param plan: the rollout's target and policy (:meth:`rollout_plan`).
        :param version: the candidate version.
        """
        from airflow_savedmodel.release.rollout import in_flight

        return in_flight(plan.target, version)

    @_typed_storage_errors
    def conclude_rollout(
        self,
        serving_config: str,
        model_name: str,
        version: int,
        *,
        approved: bool,
        approval: Mapping[str, Any],
        endpoint: Endpoint | Fleet | None = None,
    ) -> Result:
        """A person's answer on a rollout held for approval (release.rollout.conclude); the
        signers its policy required (recorded when it began) must still vouch for the candidate.

        :param serving_config: TF Serving's model config file: gate the version through it.
        :param model_name: the model's name in that file.
        :param version: the version: a number, or ``auto`` (the next one).
        :param approved: whether a person approved.
        :param approval: who answered, when, and what.
        :param endpoint: TF Serving, one server or its replicas (TFServingHook.fleet): the
            decision then waits until every replica follows, within the policy's lag.
        """
        import dataclasses

        from airflow_savedmodel.release import records
        from airflow_savedmodel.release.policy import DEFAULT
        from airflow_savedmodel.release.rollout import Settle, conclude
        from airflow_savedmodel.tfserving import fleet

        target = self.release_target(serving_config, model_name)
        policy = (records.read(target.base, version) or {}).get("policy") or {}
        target = dataclasses.replace(target, trust=self.trust(policy.get("require_signature")))
        settle = None
        if endpoint is not None:  # the lag the rollout's policy allowed (older records: the default)
            lag = (policy.get("replicas") or DEFAULT["replicas"])["max_lag_seconds"]
            settle = Settle(fleet(endpoint), float(lag))
        return conclude(target, version, approved=approved, approval=approval, settle=settle)

    @staticmethod
    def served_status(
        server_url: str | Endpoint,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
    ) -> VersionStatus:
        """Deprecated: ``TFServingHook(...).status(model_name, version, label)``.

        :param model_name: the model's name in that file.
        :param version: the version: a number, or ``auto`` (the next one).
        :param version_label: the label to move.
        """
        import warnings

        from airflow_savedmodel.tfserving import fetch_status

        warnings.warn(
            "SavedModelHook.served_status is deprecated; use TFServingHook(...).status()",
            DeprecationWarning,
            stacklevel=2,
        )
        return fetch_status(server_url, model_name, version, version_label)

    @renamed(url="model_url")
    def model_ready(self, model_url: str, deep: bool = False) -> dict[str, Any] | None:
        """A summary if a complete, valid SavedModel is at ``model_url``, else None.

        :param model_url: the SavedModel directory (a path or any fsspec URL).
        :param deep: also read every file and check its checksum.
        """
        return self.model_readiness(model_url, deep).found
