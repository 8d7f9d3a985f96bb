"""Renamed parameters: an old name keeps working for a deprecation period and warns once.

``@renamed(src="model_url")`` on a function or an operator's ``__init__`` moves a keyword argument
passed by its old name to the new one, with one warning per old name and callable in a process.
The new name must then be optional in the signature (Airflow checks required arguments before
the call), and the callable checks it was given. The renames are kept on the callable
(``__renamed__``), so tests and the reference can list every deprecated alias.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _category() -> type[Warning]:
    try:  # Airflow's, so Airflow's own filters and docs treat it as a provider deprecation
        from airflow.exceptions import AirflowProviderDeprecationWarning
    except ImportError:  # the format and storage layers run without Airflow
        return DeprecationWarning
    return AirflowProviderDeprecationWarning


def warn_renamed(where: str, old: str, new: str, stacklevel: int = 3) -> None:
    """Warn once per process that ``where`` takes ``new`` instead of ``old``."""
    with _lock:
        if (where, old) in _warned:
            return
        _warned.add((where, old))
    warnings.warn(f"{where}: {old!r} is deprecated; use {new!r}", _category(), stacklevel=stacklevel)


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Accept each old keyword name for its new one (see the module's docstring)."""

    def wrap(func: F) -> F:
        where = func.__qualname__.removesuffix(".__init__")

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                value = kwargs.pop(old)
                if kwargs.get(new) is not None:
                    raise TypeError(f"{where}: pass {new!r} or its old name {old!r}, not both")
                kwargs[new] = value
                warn_renamed(where, old, new)
            return func(*args, **kwargs)

        call.__renamed__ = {**getattr(func, "__renamed__", {}), **old_to_new}  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return wrap


def required(where: str, **values: Any) -> Any:
    """The values, in order (one alone, or a tuple); TypeError naming the first argument that
    was not given, by its new or its old name."""
    for name, value in values.items():
        if value is None:
            raise TypeError(f"{where}: missing keyword argument {name!r}")
    found = tuple(values.values())
    return found[0] if len(found) == 1 else found
