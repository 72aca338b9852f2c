"""The tenant API inside Airflow's api-server, at ``/lora/v1``: tenants call it with their API keys and
never need an Airflow login (which would show them every tenant's runs)."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from lora_tasks.tenants.api import PREFIX, create_app


class TenantApiPlugin(AirflowPlugin):
    name = "lora_tenant_api"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [{"app": create_app(), "url_prefix": PREFIX,
                                                      "name": "LoRA tenant API"}]
