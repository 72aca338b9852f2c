"""The operators' platform page inside Airflow's UI: an ``external_views`` entry in the navigation (the
platform: queue, capacity, running jobs, spend per tenant, recent adapters) and a tab on every DAG run
(its loss curve and sample grid). Airflow shows each in an iframe; the pages come from a FastAPI app
mounted in the api-server at ``/lora/ops``, which reads Airflow's own login (the ``_token`` cookie the UI
sets) and answers only users who may read ``lora_finetune``'s runs: operators, who see every tenant.
Tenants never log in to Airflow; their door is ``/lora/v1``."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lora_airflow.platform_data import platform_snapshot, run_view
from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.settings import PlatformSettings

PREFIX = "/lora/ops"
DAG_ID = "lora_finetune"
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))


def may_read_runs() -> Any:
    """A dependency: the Airflow user of the request (its bearer token or the UI's ``_token`` cookie),
    403 unless the auth manager lets it read lora_finetune's runs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    def check(user: Any = Depends(get_user)) -> Any:  # noqa: B008 - FastAPI's way of declaring a dependency
        if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                    details=DagDetails(id=DAG_ID), user=user):
            raise HTTPException(403, f"the platform page is for operators who may read {DAG_ID}'s runs")
        return user

    return check


class Pages:
    """The ledger opened on the first request: plugins are loaded by every Airflow process, served by one."""

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings

    @cached_property
    def ledger(self) -> Ledger:
        return open_ledger(self.settings.ledger_url)

    def platform(self, now: datetime) -> str:
        snapshot = platform_snapshot(self.ledger, self.settings, now)
        return TEMPLATES.get_template("platform.html").render(s=snapshot, prefix=PREFIX)

    @staticmethod
    def absent(run_id: str) -> str:
        """The run tab of a run the ledger does not hold; the id is the caller's text, so it is escaped."""
        return f"<p>Run {html.escape(run_id)} is not in the ledger yet (validate_request registers it).</p>"

    def run(self, run_id: str) -> str | None:
        view = run_view(self.ledger, self.settings, run_id)
        return None if view is None else TEMPLATES.get_template("run.html").render(v=view, prefix=PREFIX)


def create_platform_app(settings: PlatformSettings | None = None) -> FastAPI:
    pages = Pages(settings or PlatformSettings())
    app = FastAPI(title="LoRA platform view", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(may_read_runs())])

    @app.get("/", response_class=HTMLResponse)
    def platform() -> str:
        return pages.platform(datetime.now(UTC))

    @app.get("/runs", response_class=HTMLResponse)
    def run(run_id: Annotated[str, Query(max_length=250)], dag_id: str = DAG_ID) -> HTMLResponse:
        if dag_id != DAG_ID:
            return HTMLResponse(f"<p>Only {DAG_ID} runs have a LoRA view.</p>")
        page = pages.run(run_id)
        if page is None:
            return HTMLResponse(pages.absent(run_id), status_code=404)
        return HTMLResponse(page)

    return app


class PlatformViewPlugin(AirflowPlugin):
    name = "lora_platform_view"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_platform_app(), "url_prefix": PREFIX, "name": "LoRA platform view"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "LoRA platform", "href": f"{PREFIX}/", "destination": "nav", "url_route": "lora-platform"},
        {"name": "LoRA run", "href": f"{PREFIX}/runs?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
         "destination": "dag_run", "url_route": "lora-run"},
    ]
