"""The hook for a running TensorFlow Serving, one process or a fleet of replicas: its REST API
from URLs or an Airflow HTTP connection (TLS, CA bundle, headers, basic auth), each replica's
status of a version (blocking, and async for triggers), and requests to a label. Storage lives
in SavedModelHook; this hook never reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from airflow_savedmodel.release.evidence import Check
    from airflow_savedmodel.release.traffic import Answer, Request
    from airflow_savedmodel.tfserving import Endpoint, Fleet, VersionStatus


class TFServingHook(BaseHook):
    """TF Serving's REST API, from ``server_url`` or the HTTP connection ``tf_serving_conn_id``;
    one server or the replicas of a fleet, each asked on its own.

    :param server_url: the REST API's base URL (``http://tf-serving:8501``), a list of them (one
        per replica, or comma-separated), or ``dns+http://NAME:PORT``: every address NAME
        resolves to is a replica (a Kubernetes headless Service), resolved again at each step.
    :param tf_serving_conn_id: an HTTP connection to it: scheme (``schema`` or in the host; a
        ``dns+http://`` host finds the replicas by DNS), host, port, login/password as basic
        auth, extra ``replicas`` (a list of base URLs, instead of the host), ``nameserver``
        (``HOST:PORT`` of the DNS server a dns+ host is resolved with), ``headers`` (or other
        string keys) sent with every request (a bearer token), ``verify`` (false, or a CA
        bundle's path) and ``timeout``. Header and password values are masked in logs and never
        put in messages.
    """

    conn_name_attr = "tf_serving_conn_id"
    default_conn_name = "tf_serving_default"
    conn_type = "http"
    hook_name = "TensorFlow Serving"

    def __init__(
        self, server_url: str | Sequence[str] | None = None, tf_serving_conn_id: str | None = None
    ) -> None:
        super().__init__()
        if not server_url and not tf_serving_conn_id:
            raise ValueError("TF Serving needs server_url or tf_serving_conn_id")
        self.server_url, self.tf_serving_conn_id = server_url, tf_serving_conn_id

    def fleet(self) -> Fleet:
        """The replicas to ask, with the connection's headers, TLS and timeout (one URL is a
        fleet of one)."""
        from airflow_savedmodel.tfserving import Fleet, fleet

        if not self.tf_serving_conn_id:
            assert self.server_url
            return fleet(self.server_url if isinstance(self.server_url, str) else list(self.server_url))
        first, replicas, nameserver = self._connection()
        servers = [str(r) for r in replicas] if replicas else [first.url]
        if nameserver and servers[0].startswith("dns+"):
            servers[0] += f"?nameserver={nameserver}"
        return Fleet(tuple(servers), first.headers, first.verify, first.timeout)

    def endpoint(self) -> Endpoint:
        """Where the REST API answers (the first replica of a fleet given by URLs), with the
        connection's headers, TLS and timeout."""
        return self.fleet().replicas()[0]

    def _connection(self) -> tuple[Endpoint, list[Any], str | None]:
        """The connection's endpoint, its extra ``replicas`` and ``nameserver``."""
        from airflow.sdk.log import mask_secret

        from airflow_savedmodel.tfserving import Endpoint

        assert self.tf_serving_conn_id

        conn = self.get_connection(self.tf_serving_conn_id)
        extra = dict(conn.extra_dejson or {})
        replicas = list(extra.pop("replicas", None) or [])
        nameserver = extra.pop("nameserver", None)
        verify = extra.pop("verify", True)
        timeout = float(extra.pop("timeout", 30.0))
        headers = {str(k): str(v) for k, v in dict(extra.pop("headers", {}) or {}).items()}
        headers.update({str(k): v for k, v in extra.items() if isinstance(v, str)})
        if conn.login and conn.password:
            import base64

            token = base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode()
            headers.setdefault("Authorization", f"Basic {token}")
        for value in headers.values():
            mask_secret(value)
        host = str(conn.host or "")
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
        url = host.rstrip("/") + (f":{conn.port}" if conn.port else "")
        if isinstance(verify, str) and verify.lower() in ("false", "true"):
            verify = verify.lower() == "true"
        return Endpoint(url, headers, verify, timeout), replicas, nameserver

    def status(
        self, model_name: str, version: int | None = None, version_label: str | None = None
    ) -> VersionStatus:
        """What the server says of ``version`` (or the version ``version_label`` names) of ``model_name``.

        :param model_name: the model's name in TF Serving's config.
        :param version: the version asked about.
        :param version_label: a version label, instead of ``version``.
        """
        from airflow_savedmodel.tfserving import fetch_status

        return fetch_status(self.endpoint(), model_name, version, version_label)

    def statuses(
        self, model_name: str, version: int | None = None, version_label: str | None = None
    ) -> dict[str, Any]:
        """Each replica's status of ``version`` (or of ``version_label``'s), asked now:
        ``{host:port: VersionStatus.to_json() or why it did not answer}``.

        :param model_name: the model's name in TF Serving's config.
        :param version: the version asked about.
        :param version_label: a version label, instead of ``version``.
        """
        from airflow_savedmodel.release.fleet import statuses

        return statuses(self.fleet(), model_name, version, version_label)

    async def afleet(self) -> Fleet:
        """:meth:`fleet` from an event loop (the connection is read in a thread)."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.fleet)()

    async def astatuses(
        self,
        fleet: Fleet,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        session: Any = None,
    ) -> dict[str, Any]:
        """:meth:`statuses` on an event loop, every replica asked at once (a name found by DNS
        is resolved in a thread).

        :param fleet: from :meth:`afleet`, resolved once per trigger.
        :param model_name: the model's name in TF Serving's config.
        :param version: the version asked about.
        :param version_label: a version label, instead of ``version``.
        :param session: an aiohttp session kept across polls (``tfserving.client_session``).
        """
        import asyncio

        import aiohttp

        from airflow_savedmodel.errors import ServingError
        from airflow_savedmodel.tfserving import afetch_status

        try:
            replicas = await asyncio.to_thread(fleet.replicas) if fleet.discovered else fleet.replicas()
        except ServingError as exc:
            return {fleet.display: f"{type(exc).__name__}: {exc.problem}"}

        async def one(replica: Endpoint) -> Any:
            try:
                found = await afetch_status(replica, model_name, version, version_label, session)
                return found.to_json()
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                return f"{type(exc).__name__}: {exc}"

        answers = await asyncio.gather(*(one(r) for r in replicas))
        return {r.replica: answer for r, answer in zip(replicas, answers, strict=True)}

    async def aendpoint(self) -> Endpoint:
        """:meth:`endpoint` from an event loop (the connection is read in a thread)."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.endpoint)()

    async def astatus(
        self,
        endpoint: Endpoint,
        model_name: str,
        version: int | None = None,
        version_label: str | None = None,
        session: Any = None,
    ) -> VersionStatus:
        """:meth:`status` on an event loop, for triggers.

        :param endpoint: from :meth:`aendpoint`, resolved once per trigger.
        :param model_name: the model's name in TF Serving's config.
        :param version: the version asked about.
        :param version_label: a version label, instead of ``version``.
        :param session: an aiohttp session kept across polls (``tfserving.client_session``).
        """
        from airflow_savedmodel.tfserving import afetch_status

        return await afetch_status(endpoint, model_name, version, version_label, session)

    def send(self, model_name: str, version_label: str, request: Request) -> Answer:
        """One request to the version ``version_label`` names, timed; a failure is an answer with an error.

        :param model_name: the model's name in TF Serving's config.
        :param version_label: the version label to send to (``canary``, ``stable``).
        :param request: the request (release.traffic.Request).
        """
        from airflow_savedmodel.release.traffic import send

        return send(self.endpoint(), model_name, version_label, request)

    def availability(self, model_name: str, version: int) -> Check | None:
        """The rollout's ``available`` check when the fleet has settled ``version`` (AVAILABLE on
        every replica, or refused by one with its error), None while it loads somewhere.

        :param model_name: the model's name in TF Serving's config.
        :param version: the candidate version.
        """
        from airflow_savedmodel.release.fleet import available_verdict

        return available_verdict(self.statuses(model_name, version), version)

    def wait_available(
        self,
        model_name: str,
        version: int,
        timeout: float,
        poke_interval: float,
        max_lag_seconds: float | None = None,
    ) -> Check:
        """Wait in this process until every replica has settled ``version``; the check.

        :param model_name: the model's name in TF Serving's config.
        :param version: the candidate version.
        :param timeout: seconds to wait at most.
        :param poke_interval: seconds between status requests.
        :param max_lag_seconds: how long a replica may trail the first one ready.
        """
        from airflow_savedmodel.release.rollout import wait_available

        return wait_available(
            self.fleet(), model_name, version, timeout, poke_interval, max_lag=max_lag_seconds
        )

    @staticmethod
    def available_from_event(event: Mapping[str, Any], timeout: float, version: int | None = None) -> Check:
        """The ``available`` check from the event SavedModelServedTrigger fired with.

        :param event: the trigger's event payload.
        :param timeout: the policy's ``available_timeout_seconds``.
        :param version: the candidate version (default: the event's).
        """
        from airflow_savedmodel.release.rollout import available_from_event

        return available_from_event(event, timeout, version)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: every replica answers at all (any HTTP status)."""
        from airflow_savedmodel.errors import ServingError

        fleet = self.fleet()
        try:
            replicas = fleet.replicas()
        except ServingError as exc:
            return False, str(exc)
        silent = []
        for replica in replicas:
            try:
                replica.open(replica.url.rstrip("/") + "/v1/models/_")
            except OSError as exc:
                silent.append(f"{replica.display}: {type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        if silent:
            return False, "; ".join(silent)
        if len(replicas) == 1:
            return True, f"TF Serving answers at {replicas[0].display}"
        return True, f"TF Serving answers at all {len(replicas)} replicas: " + ", ".join(
            r.replica for r in replicas
        )
