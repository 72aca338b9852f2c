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


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LORA_", extra="ignore", frozen=True)

    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph, moto); boto3 also honours AWS_ENDPOINT_URL"
    )
    antivirus: Literal["clamscan", "clamd", "off"] = Field(
        "clamscan", description="'clamscan' (one process per batch), 'clamd' (a running daemon), or 'off'"
    )
    clamd_socket: Path | None = Field(None, description="clamd's local socket, for antivirus=clamd")
    clamav_database: Path | None = Field(
        None, description="signature file or folder for clamscan -d (default: clamav's own database)"
    )
    clamav_image_fuzzy_hash: bool = Field(
        True, description="clamscan's fuzzy hashing of images (matches known-bad pictures); about 7x slower on "
        "JPEGs, so large installations use clamd or turn it off"
    )
    workers: int = Field(0, ge=0, description="processes for scanning and filtering; 0 = one per CPU core")

    @property
    def worker_count(self) -> int:
        return self.workers or len(os.sched_getaffinity(0)) or 1


@lru_cache(maxsize=1)
def platform_settings() -> PlatformSettings:
    return PlatformSettings()
