"""Publish a trained adapter as the next version of its name: reserve the number in the registry, upload
every file, write the manifest last (only if absent), then mark the version published.

Two publishes of one name get two numbers (the ledger hands them out); a retried publish of one run gets
its own number again and completes it. Until the manifest is written and the registry row marked, no
reader sees the version: a publish cut off halfway leaves files without a manifest and an unpublished
row, which the retry finishes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lora_tasks.clock import Clock, utc_now
from lora_tasks.errors import StoreError
from lora_tasks.ledger.store import Ledger
from lora_tasks.publish.bundle import check_formats, collect_bundle
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores.base import Store
from lora_tasks.stores.versions import publish_version, version_prefix


class PublishError(RuntimeError):
    """The store refused the version's files or could not be reached, after botocore's retries: nothing is
    published. Not a LoraTaskError: an outage is not the user's to fix, so Airflow retries the task, and the
    retry completes the same version."""


@dataclass(frozen=True)
class PublishResult:
    tenant: str
    name: str
    version: int
    uri: str
    files: int
    """Files in the version, the manifest not counted."""
    bytes: int
    seconds: float


def publish_adapter(store: Store, ledger: Ledger, *, spec: JobSpec, run_id: str, adapter_dir: Path,
                    eval_dir: Path | None = None, metadata: dict[str, Any] | None = None,
                    clock: Clock = utc_now) -> PublishResult:
    """Publish ``adapter_dir`` (the trainer's output) and what the evaluation wrote in ``eval_dir`` as version
    ``v<n>`` of ``spec.job.tenant/spec.job.name``; ``metadata`` adds keys to the manifest (run figures)."""
    start = time.perf_counter()
    tenant, name = spec.job.tenant, spec.job.name
    check_formats(spec, adapter_dir)
    version = ledger.reserve_adapter_version(tenant, name, run_id, base_model=spec.model.base_model,
                                             formats=list(spec.output.formats), created_at=clock())
    uri = f"{store.uri}/{version_prefix(tenant, name, f'v{version}')}"
    with tempfile.TemporaryDirectory(prefix="publish-") as staging:
        bundle = collect_bundle(spec, adapter_dir, eval_dir, Path(staging), version=version, uri=uri)
        extra = {"run_id": run_id, "base_model": spec.model.base_model, "formats": list(spec.output.formats),
                 "trigger_word": spec.dataset.trigger_word, "license": spec.output.license,
                 "figures": bundle.figures, **(metadata or {})}
        try:
            manifest = publish_version(store, tenant, name, f"v{version}", bundle.files, extra, clock)
        except StoreError as exc:
            raise PublishError(f"{tenant}/{name} v{version} was not published to {uri}: no manifest was written "
                               f"and the registry does not list it, so no reader sees it; retrying the task "
                               f"completes this same version. {exc}") from exc
    ledger.mark_adapter_published(tenant, name, version, uri=uri, figures=bundle.figures, public=spec.output.public,
                                  published_at=clock())
    return PublishResult(tenant, name, version, uri, len(manifest["files"]),
                         sum(f["bytes"] for f in manifest["files"].values()), round(time.perf_counter() - start, 3))
