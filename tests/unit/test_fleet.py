"""TF Serving as replicas, on plain data: how a fleet is given (URLs, a list, a dns+ name), how
each replica is addressed, and the verdicts over each replica's status that every wait shares."""

from __future__ import annotations

import pytest

from airflow_savedmodel.errors import ServingError
from airflow_savedmodel.release import fleet as waits
from airflow_savedmodel.tfserving import Endpoint, Fleet, fleet, resolve_addresses


def status(version: int, state: str | None, code: str = "OK", message: str = "") -> dict[str, object]:
    return {"version": version, "state": state, "error_code": code, "error_message": message}


def test_a_fleet_is_one_url_a_list_or_a_dns_name() -> None:
    assert fleet("http://a:8501").servers == ("http://a:8501",)
    assert fleet("http://a:8501, http://b:8501").servers == ("http://a:8501", "http://b:8501")
    assert fleet(["http://a:8501", "http://b:8501"]).replicas()[1].url == "http://b:8501"
    one = Endpoint("https://a:8501", {"Authorization": "Bearer x"}, "/ca.pem", 7.0)
    kept = fleet(one).replicas()[0]
    assert (kept.url, dict(kept.headers), kept.verify, kept.timeout) == (
        "https://a:8501",
        {"Authorization": "Bearer x"},
        "/ca.pem",
        7.0,
    )
    with pytest.raises(ServingError, match="a dns\\+ name stands for the whole fleet"):
        Fleet(("dns+http://svc:8501", "http://b:8501"))
    with pytest.raises(ServingError, match="no TF Serving given"):
        Fleet(())


def test_a_dns_name_is_every_address_it_resolves_to_each_named_for_tls() -> None:
    replicas = Fleet(("dns+http://localhost:8501",)).replicas()
    assert "127.0.0.1:8501" in [r.replica for r in replicas]
    assert all(r.host == "localhost" and r.request_headers()["Host"] == "localhost:8501" for r in replicas)
    with pytest.raises(ServingError, match=r"cannot resolve no-such-host\.invalid"):
        resolve_addresses("no-such-host.invalid", 8501)
    with pytest.raises(ServingError, match="dns\\+http://NAME:PORT"):
        Fleet(("dns+ftp://svc:21",)).replicas()


def test_the_available_verdict_waits_for_every_replica_and_names_a_failed_one() -> None:
    assert waits.available_verdict({"a": status(2, "AVAILABLE"), "b": status(2, "LOADING")}, 2) is None
    assert waits.available_verdict({"a": status(2, "AVAILABLE"), "b": "URLError: refused"}, 2) is None
    done = waits.available_verdict({"a": status(2, "AVAILABLE"), "b": status(2, "AVAILABLE")}, 2)
    assert (
        done is not None and done.status == "pass" and done.message == "version 2 AVAILABLE on all 2 replicas"
    )
    failed = waits.available_verdict(
        {"a": status(2, "AVAILABLE"), "b": status(2, "END", "NOT_FOUND", "gone")}, 2
    )
    assert failed is not None and failed.message == "replica b reports version 2 END: NOT_FOUND: gone"
    one = waits.available_verdict({"x": status(2, "AVAILABLE")}, 2)
    assert one is not None and one.message == "version 2 AVAILABLE on TF Serving"  # one server: as before
    assert waits.progress({"a": status(2, "AVAILABLE"), "b": status(2, "LOADING")}, 2) == (
        "1 of 2 replicas AVAILABLE; waiting for b (version 2 is LOADING)"
    )


def test_a_replica_trailing_past_the_lag_fails_the_wait_named() -> None:
    now = [0.0]
    waiter = waits.Waiter(timeout=100, max_lag=5, clock=lambda: now[0])
    found = {"a": status(2, "AVAILABLE"), "b": status(2, "START")}
    assert waiter.late("available", found, 2, "AVAILABLE") is None  # the first is ready at 0
    now[0] = 4.9
    assert waiter.late("available", found, 2, "AVAILABLE") is None
    now[0] = 5.0
    late = waiter.late("available", found, 2, "AVAILABLE")
    assert late is not None and late.message == (
        "a replica trailed the first by more than 5 s (replicas.max_lag_seconds): 1 of 2 replicas AVAILABLE; "
        "waiting for b (version 2 is START)"
    )


def test_an_event_from_a_trigger_of_one_server_still_reads() -> None:
    """Events fired before replicas carried one ``served`` status and no ``replicas``."""
    check = waits.event_check({"status": "success", "served": status(3, "AVAILABLE")}, 3, 60)
    assert check.status == "pass" and check.message == "version 3 AVAILABLE on TF Serving"
    timeout = waits.event_check({"status": "timeout", "served": status(3, "LOADING")}, 3, 60)
    assert timeout.message == "not AVAILABLE after 60 s: version 3 is LOADING"


def test_a_fleets_model_url_is_a_model_url() -> None:
    from airflow_savedmodel.tfserving import is_model_url

    assert is_model_url("http://a:8501/v1/models/m")
    assert is_model_url("http://a:8501/v1/models/m, https://b:8501/v1/models/m/labels/stable")
    assert is_model_url("dns+http://svc:8501/v1/models/m?nameserver=10.0.0.10:53")
    assert not is_model_url("dns+http://svc:8501/v1/models/m,http://b:8501/v1/models/m")
    assert not is_model_url("gs://bucket/serving/m") and not is_model_url("http://a:8501/m")


def test_a_fleet_never_prints_its_header_values() -> None:
    fleet = Fleet(("http://a:8501", "http://b:8501"), {"Authorization": "Bearer tok-123"})
    assert "tok-123" not in repr(fleet) and "Authorization" in repr(fleet)
    assert all("tok-123" not in repr(r) for r in fleet.replicas())
