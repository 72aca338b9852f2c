"""Platform settings: what the operator decides, not the tenant (read once from LORA_* variables).

A job spec says what to train; these say how this installation runs: where the object
store is, which antivirus engine guards intake, where the workspace lives. Tenants cannot
switch the antivirus off from a job spec.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

INCLUDE = Path(__file__).resolve().parents[1] / "include"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LORA_", extra="ignore", frozen=True)

    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph, moto); boto3 also honours AWS_ENDPOINT_URL"
    )
    antivirus: Literal["auto", "clamscan", "clamd", "off"] = Field(
        "auto", description="'auto' (clamd when one answers on clamd_socket, else clamscan), 'clamscan' (one "
        "process per batch), 'clamd' (a running daemon, required), or 'off'"
    )
    clamd_socket: Path | None = Field(
        None, description="clamd's local socket, for antivirus=auto/clamd (unset: Debian's /run/clamav/clamd.ctl or "
        "/var/run/clamav/clamd.ctl)"
    )
    clamd_max_file_bytes: int = Field(
        25 << 20, ge=1, description="the daemon's MaxFileSize (Debian's: 25M): clamd answers OK above it without "
        "reading, so larger files are scanned by clamscan instead; raise both together"
    )
    clamav_database: Path | None = Field(
        None, description="signature file or folder for clamscan -d (default: clamav's own database)"
    )
    clamav_image_fuzzy_hash: bool = Field(
        True, description="clamscan's fuzzy hashing of images (matches known-bad pictures); about 7x slower on "
        "JPEGs, so large installations use clamd or turn it off"
    )
    workers: int = Field(0, ge=0, description="processes for scanning and filtering; 0 = one per CPU core")
    cache_dir: Path = Field(
        Path("build/cache"), description="measurements every worker reuses (base-model memory and FLOP profiles)"
    )
    workspace: Path = Field(Path("build/workspace"), description="per-run working folders: <tenant>/<run>/<stage>/")
    artifact_root: str = Field("build/artifacts", description="published adapters and batch requests (path/s3://)")
    runner: Literal["local", "kubernetes"] = Field("local", description="how the train stage runs")
    default_gpu_type: str = Field("cpu", description="GPU type for jobs that say gpu_type: auto")
    form_defaults: Path | None = Field(
        None, description="a job spec whose values the trigger form proposes (make up: include/jobs/demo.yaml)"
    )
    tenants_file: Path = Field(INCLUDE / "tenants.yaml", description="who may act for which tenant")
    gateway_url: str = Field("http://127.0.0.1:8080", description="Airflow's API, where the tenant API triggers runs")
    gateway_user: str = Field("lora-gateway", description="the Airflow login the tenant API triggers runs as")
    gateway_password: str = Field("", description="its password (the local stack generates one)")
    upload_max_bytes: int = Field(
        1 << 30, ge=1, description="the largest dataset archive the tenant API takes with a job (request bytes)"
    )
    scheduling_file: Path = Field(INCLUDE / "scheduling.yaml", description="off-peak windows and prices")
    gpu_types_file: Path = Field(INCLUDE / "gpu_types.yaml", description="GPU types: memory, nodes, pools")
    ledger_url: str = Field(f"sqlite:///{INCLUDE.parent / 'build' / 'ledger.db'}",
                            description="SQLAlchemy URL of the ledger (runs, costs, capacity decisions)")
    airflow_api_url: str = Field("http://127.0.0.1:8080", description="Airflow's REST API, for pool slots")
    airflow_api_user: str = Field("admin", description="an Airflow user allowed to edit pools")
    airflow_api_password: str = Field("admin", description="its password (from a secret in production)")
    trainer_image: str = Field("lora-trainer:0.1.0", description="the training image (Dockerfile) for pods")
    k8s_namespace: str = Field("lora-training", description="namespace of the training pods")
    k8s_workspace_claim: str = Field(
        "lora-workspace", description="ReadWriteMany PVC holding the workspace, mounted at the same path in pods"
    )
    shared_data: Path | None = Field(
        None, description="folder of base models and uploaded datasets that workers and training pods both mount "
        "(kubernetes runner: the PVC k8s_data_claim, read-only in pods, at this same path)"
    )
    k8s_data_claim: str = Field("lora-data", description="PVC holding shared_data")
    k8s_credentials_secret: str = Field(
        "lora-trainer-credentials", description="Secret whose keys become the trainer's environment (S3 keys)"
    )

    @property
    def worker_count(self) -> int:
        return self.workers or len(os.sched_getaffinity(0)) or 1


@lru_cache(maxsize=1)
def platform_settings() -> PlatformSettings:
    return PlatformSettings()
