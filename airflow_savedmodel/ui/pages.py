"""The Models view's FastAPI app, mounted by the plugin under ``/savedmodel`` on Airflow's API
server, which mounts plugin apps without authentication: every route takes the user from
Airflow's token (``GetUserDep``) and shows only the models :mod:`access` lets them see (a
model they may not see answers 403). Storage is read with the model's connection on the
server; no credential reaches the browser, and nothing here writes.

Pages: ``/models`` (every model), ``/models/{id}`` (versions, config entry, signature diff,
releases, the forms that act on it), ``/models/{id}/releases/{version}`` (one release's checks
and plots). The same data as JSON under ``/api/``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from airflow_savedmodel.errors import NotFoundError, SavedModelError
from airflow_savedmodel.ui.known import Action, KnownModel

PREFIX = "/savedmodel"


@dataclass
class Shown:
    """What of a model's page to show: the page of its versions, and two versions whose
    signatures to compare (query parameters ``page``, ``old``, ``new``)."""

    page: int = 1
    old: int | None = None
    new: int | None = None


ShownDep = Annotated[Shown, Depends()]
ACTION_TITLES = {
    "rollout": "Roll out",
    "label": "Move a label",
    "publish": "Publish a new version",
}


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("airflow_savedmodel.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    env.filters["size"] = _size
    env.filters["figure"] = _figure
    env.filters["json"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    return env


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def _figure(value: Any) -> str:
    """A check's figure as people read it: four significant digits, nothing for none."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _known() -> list[KnownModel]:
    """Every model Airflow knows, before access is checked."""
    from airflow.utils.session import create_session

    from airflow_savedmodel.ui import airflow_db

    with create_session() as session:
        return airflow_db.models(session)


def _visible(user: Any) -> list[KnownModel]:
    from airflow_savedmodel.ui import access

    return access.visible(_known(), user)


def _one(user: Any, model_id: str) -> KnownModel:
    """The model ``model_id`` if ``user`` may see it: 404 if Airflow knows no such model,
    403 if it does and they may not."""
    from airflow_savedmodel.ui import access

    known = _known()
    mine = [m for m in access.visible(known, user) if m.id == model_id]
    if mine:
        return mine[0]
    if any(m.id == model_id for m in known):
        raise HTTPException(
            403, "you may not read this model: it needs read access to its DAGs and connection"
        )
    raise HTTPException(404, f"no model {model_id!r} is known to Airflow")


def _ref(model: KnownModel) -> Any:
    """The registry's handle on ``model``: its config and base path resolved with its connection."""
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.release import registry

    hook = SavedModelHook(savedmodel_conn_id=model.conn_id)
    return registry.find([hook.filesystem(model.config)], hook.filesystem, model.name)


def _guarded(what: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``what()``, with a storage failure as the page's error rather than a 500."""
    try:
        return what()
    except HTTPException:
        raise
    except SavedModelError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # a connection gone, a filesystem's own fault: the view stays up
        return {"error": f"reading storage failed ({type(exc).__name__})"}


def _overview(model: KnownModel) -> dict[str, Any]:
    from airflow_savedmodel.release import registry

    return registry.overview(_ref(model))


def _links(request: Request, model: KnownModel, version: int | None = None) -> list[dict[str, str]]:
    """The forms that act on ``model`` (for ``version`` where given: only those that take one)."""
    root = str(request.scope.get("root_path", ""))
    out = []
    for action in model.actions:
        if version is not None and not action.takes_version:
            continue
        title = ACTION_TITLES[action.kind] + (f" to version {version}" if version is not None else "")
        out.append(
            {
                "title": f"{title} ({action.dag_id})",
                "href": form_url(root, model, action, version),
                "dag_id": action.dag_id,
            }
        )
    return out


def form_url(root: str, model: KnownModel, action: Action, version: int | None) -> str:
    """The view's trigger form of ``action``'s DAG for ``model`` (and ``version``)."""
    query = f"?version={version}" if version is not None and action.takes_version else ""
    return f"{root}/models/{model.id}/trigger/{urllib.parse.quote(action.dag_id)}{query}"


def create_app() -> FastAPI:
    """The app the plugin mounts (Airflow's API server builds it once)."""
    app = FastAPI(title="SavedModel: Models view", docs_url=None, redoc_url=None, openapi_url=None)
    pages = _templates()

    def render(request: Request, name: str, **values: Any) -> HTMLResponse:
        root = str(request.scope.get("root_path", ""))
        return HTMLResponse(pages.get_template(name).render(root=root, **values))

    @app.exception_handler(HTTPException)
    async def as_page(request: Request, exc: HTTPException) -> Any:
        if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        body = pages.get_template("error.html").render(
            root=str(request.scope.get("root_path", "")), status=exc.status_code, detail=exc.detail
        )
        return HTMLResponse(body, status_code=exc.status_code)

    def listing(user: Any) -> list[dict[str, Any]]:
        models = _visible(user)
        with ThreadPoolExecutor(max_workers=8) as pool:
            summaries = list(pool.map(lambda m: _guarded(lambda: _overview(m)), models))
        return [
            {"id": m.id, "name": m.name, "config": m.config, "publishers": sorted(m.publishers), **s}
            for m, s in zip(models, summaries, strict=True)
        ]

    def model_doc(user: Any, model_id: str, shown: Shown) -> Any:
        from airflow_savedmodel.release import registry

        model = _one(user, model_id)
        page, old, new = shown.page, shown.old, shown.new

        def read() -> dict[str, Any]:
            ref = _ref(model)
            doc = registry.model_page(ref, page=page)
            shown = doc["labels"].get("stable") or (doc["complete"][-1] if doc["complete"] else None)
            doc["signatures"] = {"version": shown, "list": registry.signatures(ref, shown) if shown else []}
            doc["diff"] = None
            if old is not None and new is not None:
                doc["diff"] = {"old": old, "new": new, "changes": registry.signature_diff(ref, old, new)}
            return doc

        doc = _guarded(read)
        doc.update(id=model.id, name=model.name, config=model.config, publishers=sorted(model.publishers))
        return model, doc

    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request, user: GetUserDep) -> HTMLResponse:
        return render(request, "models.html", models=listing(user))

    @app.get("/api/models")
    def models_json(request: Request, user: GetUserDep) -> list[dict[str, Any]]:
        return listing(user)

    @app.get("/models/{model_id}", response_class=HTMLResponse)
    def model_page(request: Request, user: GetUserDep, model_id: str, shown: ShownDep) -> HTMLResponse:
        model, doc = model_doc(user, model_id, shown)
        per_version = {
            row["version"]: _links(request, model, row["version"])
            for row in doc.get("versions", [])
            if row["state"] == "complete"
        }
        return render(
            request, "model.html", model=doc, actions=_links(request, model), per_version=per_version
        )

    @app.get("/api/models/{model_id}")
    def model_json(request: Request, user: GetUserDep, model_id: str, shown: ShownDep) -> dict[str, Any]:
        model, doc = model_doc(user, model_id, shown)
        doc["actions"] = _links(request, model)
        return dict(doc)

    def release_doc(user: Any, model_id: str, version: int) -> dict[str, Any]:
        from airflow_savedmodel.release import registry

        model = _one(user, model_id)

        def read() -> dict[str, Any]:
            try:
                return registry.release_page(_ref(model), version)
            except NotFoundError as exc:
                raise HTTPException(404, str(exc)) from None

        doc = _guarded(read)
        doc.setdefault("name", model.name)
        doc.setdefault("version", version)
        doc["id"] = model.id
        return doc

    @app.get("/models/{model_id}/releases/{version}", response_class=HTMLResponse)
    def release_page(request: Request, user: GetUserDep, model_id: str, version: int) -> HTMLResponse:
        from airflow_savedmodel.ui import plots

        doc = release_doc(user, model_id, version)
        return render(request, "release.html", release=doc, plots=plots.all_plots(doc.get("bake")))

    @app.get("/models/{model_id}/trigger/{dag_id}", response_class=HTMLResponse)
    def trigger_page(
        request: Request, user: GetUserDep, model_id: str, dag_id: str, version: int | None = None
    ) -> HTMLResponse:
        from airflow.utils.session import create_session

        from airflow_savedmodel.ui import airflow_db, forms

        model = _one(user, model_id)
        action = next((a for a in model.actions if a.dag_id == dag_id), None)
        if action is None:
            raise HTTPException(404, f"no DAG {dag_id!r} you may read acts on {model.name!r}")
        with create_session() as session:
            declared = airflow_db.params(session, dag_id)
        title = ACTION_TITLES[action.kind] + (f" to version {version}" if version is not None else "")
        return render(
            request,
            "trigger.html",
            model={"id": model.id, "name": model.name},
            dag_id=dag_id,
            title=f"{title} of {model.name}",
            airflow=str(request.scope.get("root_path", "")).removesuffix(PREFIX),
            fields=forms.fields(declared, action.conf(model, version)),
        )

    @app.get("/api/models/{model_id}/releases/{version}")
    def release_json(request: Request, user: GetUserDep, model_id: str, version: int) -> dict[str, Any]:
        return release_doc(user, model_id, version)

    return app
