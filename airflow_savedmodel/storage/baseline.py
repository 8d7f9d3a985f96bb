"""The model whose clients a new model must keep working for: one resolver shared by
``savedmodel diff``, ``validate --compatible-with``, ``export --compatible-with`` and the hook.

It accepts what users have at hand: a running TF Serving's model URL (the signatures it serves),
``"served"`` (the version served today under the destination's base path), a SavedModel
directory, or a serving base path (the version served from it today).
"""

from __future__ import annotations

from typing import Any

from airflow_savedmodel import location, tfserving
from airflow_savedmodel.errors import NotFoundError, SavedModelError
from airflow_savedmodel.format.compat import Baseline
from airflow_savedmodel.format.model import has_saved_model
from airflow_savedmodel.location import Location
from airflow_savedmodel.storage.model_config import served_version

SERVED = "served"


def model_to_compare(
    value: str | Location,
    *,
    options: dict[str, Any] | None = None,
    base: Location | None = None,
    config: Location | None = None,
    model_name: str | None = None,
    server: tfserving.Endpoint | None = None,
) -> Location | Baseline | None:
    """What ``value`` names as the model to compare with: a Baseline (a TF Serving model URL), a
    SavedModel's Location, or None when ``"served"`` (or a base path) serves nothing yet.

    ``base``, ``config`` and ``model_name`` say where ``"served"`` looks (the destination of an
    export); a base path given as ``value`` is read with ``config``/``model_name`` likewise.
    ``server`` carries the headers and TLS settings for a TF Serving URL behind a gateway.
    """
    if isinstance(value, str) and tfserving.is_model_url(value):
        return tfserving.fetch_signatures(value, server)
    if value == SERVED:
        if base is None:
            raise SavedModelError(
                f'"{SERVED}" needs the serving base path to look under; give the base path itself '
                "(gs://.../ranker) or a TF Serving model URL (http://host:8501/v1/models/NAME)"
            )
        return served_version(base, config, model_name)
    where = location.resolve(value, options)
    if has_saved_model(where.fs, where.path):
        return where
    served = served_version(where, config, model_name)
    if served is None:
        raise NotFoundError("neither a SavedModel nor a serving base path with a complete version", where.url)
    return served
