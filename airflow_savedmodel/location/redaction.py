"""Keeping credentials out of what is printed: URLs without userinfo or secret query
parameters, messages with the values of secret storage options scrubbed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

URL_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


# Option keys whose values are credentials (fsspec's gcsfs/s3fs names and the usual others).
SENSITIVE_KEYS = ("secret", "token", "password", "private_key", "keyfile", "credentials", "key")


_USERINFO_ANYWHERE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


_SECRET_PARAM = re.compile(
    r"(?<![A-Za-z])((?:access_)?token|secret|password|signature|credential|key)([A-Za-z_-]*=)[^&\s'\"]+",
    re.IGNORECASE,
)


def redact(url: str) -> str:
    """``url`` without credentials in its authority (``s3://KEY:SECRET@bucket`` -> ``s3://***@bucket``)."""
    return URL_USERINFO.sub(r"\1***@", url)


# gcsfs's ``token`` names a way to get credentials as often as it holds one; these are not secrets.
TOKEN_MODES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def secret_values(options: dict[str, Any]) -> list[str]:
    """The values of credential-looking keys in (nested) storage options."""
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            found += secret_values(value)
        elif (
            isinstance(value, str)
            and value
            and any(k in key.lower() for k in SENSITIVE_KEYS)
            and not (key == "token" and value in TOKEN_MODES)
        ):
            found.append(value)
    return found


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (an error message from a filesystem library) with credentials taken out: URL
    userinfo, token/secret/signature query parameters, and each of ``secrets`` verbatim."""
    for value in sorted(set(secrets), key=len, reverse=True):
        if len(value) >= 4:  # shorter ones would mangle ordinary words
            text = text.replace(value, "***")
    text = _USERINFO_ANYWHERE.sub(r"\1***@", text)
    return _SECRET_PARAM.sub(r"\1\2***", text)
