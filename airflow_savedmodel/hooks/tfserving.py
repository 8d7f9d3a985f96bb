"""The hook for a running TensorFlow Serving: its REST API from a URL or an Airflow HTTP
connection (TLS, CA bundle, headers, basic auth), a version's status (blocking, and async for
triggers), and requests to a label. Storage lives in SavedModelHook; this hook never reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from collections.abc import Mapping

    from airflow_savedmodel.release.evidence import Check
    from airflow_savedmodel.release.traffic import Answer, Request
    from airflow_savedmodel.tfserving import Endpoint, VersionStatus


class TFServingHook(BaseHook):
    """TF Serving's REST API, from ``server_url`` or the HTTP connection ``tf_serving_conn_id``.

    :param server_url: the REST API's base URL (``http://tf-serving:8501``), for local use.
    :param tf_serving_conn_id: an HTTP connection to it: scheme (``schema`` or in the host),
        host, port, login/password as basic auth, extra ``headers`` (or other string keys) sent
        with every request (a bearer token), ``verify`` (false, or a CA bundle's path) and
        ``timeout``. Header and password values are masked in logs and never put in messages.
    """

    conn_name_attr = "tf_serving_conn_id"
    default_conn_name = "tf_serving_default"
    conn_type = "http"
    hook_name = "TensorFlow Serving"

    def __init__(self, server_url: str | None = None, tf_serving_conn_id: str | None = None) -> None:
        super().__init__()
        if not server_url and not tf_serving_conn_id:
            raise ValueError("TF Serving needs server_url or tf_serving_conn_id")
        self.server_url, self.tf_serving_conn_id = server_url, tf_serving_conn_id

    def endpoint(self) -> Endpoint:
        """Where the REST API answers, with the connection's headers, TLS and timeout."""
        from airflow_savedmodel.tfserving import Endpoint

        if not self.tf_serving_conn_id:
            assert self.server_url is not None
            return Endpoint(self.server_url)
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.tf_serving_conn_id)
        extra = dict(conn.extra_dejson or {})
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
        return Endpoint(url, headers, verify, timeout)

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

    def availability(self, model_name: str, version: int, timeout: float) -> Check | None:
        """The rollout's ``available`` check when the server has settled ``version`` (AVAILABLE,
        or refused with its error), None while it loads or when it cannot be asked yet.

        :param model_name: the model's name in TF Serving's config.
        :param version: the candidate version.
        :param timeout: the policy's ``available_timeout_seconds``, named in a failing check.
        """
        from airflow_savedmodel.errors import SavedModelError
        from airflow_savedmodel.release.rollout import available_check

        try:
            return available_check(self.status(model_name, version).to_json(), timeout)
        except (OSError, SavedModelError):
            return None

    def wait_available(self, model_name: str, version: int, timeout: float, poke_interval: float) -> Check:
        """Wait in this process until ``version`` is settled or ``timeout`` passes; the check.

        :param model_name: the model's name in TF Serving's config.
        :param version: the candidate version.
        :param timeout: seconds to wait at most.
        :param poke_interval: seconds between status requests.
        """
        from airflow_savedmodel.release.rollout import wait_available

        return wait_available(self.endpoint(), model_name, version, timeout, poke_interval)

    @staticmethod
    def available_from_event(event: Mapping[str, Any], timeout: float) -> Check:
        """The ``available`` check from the event SavedModelServedTrigger fired with.

        :param event: the trigger's event payload.
        :param timeout: the policy's ``available_timeout_seconds``.
        """
        from airflow_savedmodel.release.rollout import available_from_event

        return available_from_event(event, timeout)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: the server answers at all (any HTTP status)."""
        endpoint = self.endpoint()
        try:
            endpoint.open(endpoint.url.rstrip("/") + "/v1/models/_")
        except OSError as exc:
            return False, f"{endpoint.display}: {type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        return True, f"TF Serving answers at {endpoint.display}"
