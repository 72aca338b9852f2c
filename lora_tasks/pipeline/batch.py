"""Batch requests: job specs dropped under ``inbox/<tenant>/`` in the artifact store.

The nightly batch DAG collects them at the start of an off-peak window, submits one
``lora_finetune`` run each, and moves each request to ``submitted/<tenant>/`` (with its run
id) or ``rejected/<tenant>/`` (with the reason). A request's run id is derived from its
tenant, name and content, so collecting twice can never submit the same request twice.

    python -m lora_tasks.pipeline.batch submit --tenant acme job.yaml    # what a user or the API does
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError, StoreError
from lora_tasks.pipeline.tenancy import load_tenants, may_act
from lora_tasks.settings import PlatformSettings, platform_settings
from lora_tasks.spec.loading import parse_job_spec, read_spec_file, read_yaml_text
from lora_tasks.spec.schema import NAME_PATTERN
from lora_tasks.stores import open_store
from lora_tasks.stores.base import Store

INBOX, SUBMITTED, REJECTED = "inbox", "submitted", "rejected"
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRequest:
    key: str
    tenant: str
    run_id: str
    conf: dict[str, Any]


def submit_request(store: Store, tenant: str, spec_text: str, filename: str) -> str:
    """Drop a job spec into a tenant's inbox (after checking it parses); returns its key."""
    if not re.match(NAME_PATTERN, tenant) or ".." in tenant:
        raise LoraTaskError(f"tenant {tenant!r} is not a valid name")
    data = read_yaml_text(spec_text, filename)
    data.setdefault("job", {}).update({"tenant": tenant, "priority": "batch"})
    parse_job_spec(data, filename)
    key = f"{INBOX}/{tenant}/{PurePosixPath(filename).name}"
    store.write(key, spec_text.encode())
    return key


def collect_requests(store: Store, allowed: Callable[[str], bool] = lambda tenant: True,
                     ) -> tuple[list[BatchRequest], list[str]]:
    """Valid pending requests of the ``allowed`` tenants, and the keys of those just moved to
    rejected/ (with a reason file); other tenants' requests stay in the inbox."""
    requests, rejected = [], []
    for key in store.list(INBOX):
        parts = PurePosixPath(key).parts
        if len(parts) != 3 or parts[2].startswith(".") or not key.endswith(SPEC_SUFFIXES) or not allowed(parts[1]):
            continue
        tenant = parts[1]
        try:
            requests.append(_request(store, key, tenant))
        except LoraTaskError as exc:
            _move(store, key, REJECTED, f"{exc}\n")
            rejected.append(key)
    return requests, rejected


def collect_submissions(settings: PlatformSettings, user: str | None, roles: frozenset[str]) -> list[dict[str, Any]]:
    """The nightly run's requests to submit; malformed ones are moved to rejected/ with the reason. A run
    triggered by hand (``user`` with ``roles``) takes only the tenants its user may act for: the runs it
    creates carry that user, and would fail the tenant check for everyone else's requests."""
    tenants = load_tenants(settings.tenants_file)
    requests, rejected = collect_requests(open_store(settings.artifact_root, settings.s3_endpoint_url),
                                          lambda t: t not in tenants or may_act(tenants[t], user, roles))
    log.info("%d request(s) to submit, %d rejected", len(requests), len(rejected))
    return [{"trigger_run_id": r.run_id, "conf": r.conf, "key": r.key} for r in requests]


def trigger_arguments(request: dict[str, Any]) -> dict[str, Any]:
    """What the TriggerDagRunOperator needs of a collected request."""
    return {"trigger_run_id": request["trigger_run_id"], "conf": request["conf"]}


def mark_all_submitted(settings: PlatformSettings, requests: list[dict[str, Any]]) -> int:
    """Move every submitted request out of the inbox (a request whose run already existed included)."""
    store = open_store(settings.artifact_root, settings.s3_endpoint_url)
    for request in requests:
        mark_submitted(store, request["key"], request["trigger_run_id"])
    return len(requests)


def _request(store: Store, key: str, tenant: str) -> BatchRequest:
    raw = store.read(key)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LoraTaskError(f"{key} is not UTF-8 text. Fix: save the job spec as UTF-8") from None
    data = read_yaml_text(text, key)
    claimed = (data.get("job") or {}).get("tenant", tenant)
    if claimed != tenant:
        raise LoraTaskError(f"{key} says job.tenant {claimed!r} but sits in {tenant!r}'s inbox. Fix: drop it "
                            f"in inbox/{claimed}/ or correct job.tenant")
    data.setdefault("job", {}).update({"tenant": tenant, "priority": "batch"})
    spec = parse_job_spec(data, key)
    digest = hashlib.sha256(raw).hexdigest()[:12]
    run_id = f"batch__{tenant}__{spec.job.name}__{digest}"
    return BatchRequest(key=key, tenant=tenant, run_id=run_id, conf={"job_spec": data})


def mark_submitted(store: Store, key: str, run_id: str) -> str:
    return _move(store, key, SUBMITTED, f"{run_id}\n")


def _move(store: Store, key: str, folder: str, note: str) -> str:
    """Copy to folder/<tenant>/<file> with a note beside it, then remove from the inbox."""
    target = folder + key[len(INBOX):]
    store.write(target, store.read(key))
    store.write(f"{target}.{folder}.txt", note.encode())
    store.delete(key)
    return target


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.pipeline.batch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="drop a job spec into a tenant's inbox for the next off-peak window")
    submit.add_argument("spec", type=Path)
    submit.add_argument("--tenant", required=True)
    args = parser.parse_args(argv)
    settings = platform_settings()
    try:
        key = submit_request(open_store(settings.artifact_root, settings.s3_endpoint_url), args.tenant,
                             read_spec_file(args.spec), args.spec.name)
    except OSError as exc:
        raise StoreError(f"the inbox at {settings.artifact_root} cannot be written ({exc.strerror}). Fix: check "
                         "LORA_ARTIFACT_ROOT and its permissions") from None
    print(f"queued {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
