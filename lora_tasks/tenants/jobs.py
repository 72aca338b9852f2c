"""Taking and cancelling a tenant's jobs: the spec checked with the DAG's own messages, the tenant's quotas
(include/tenants.yaml), the ``Idempotency-Key``, then a ``lora_finetune`` run triggered as the service
identity. Everything that can be refused is refused before Airflow hears of the job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lora_tasks.errors import LoraTaskError
from lora_tasks.ledger.store import Ledger
from lora_tasks.pipeline.data_access import check_dataset_location
from lora_tasks.pipeline.tenancy import Quotas, Tenants
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.conf import check_conf_keys, spec_data_from_conf
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.tenants.gateway import AirflowGateway

UNFINISHED = ("submitted", "running")
ENDED = frozenset({"success", "failed"})
REGISTER_GRACE = timedelta(minutes=1)
"""validate_request registers a run within seconds of its start; a taken job older than this is looked up."""


@dataclass
class Refused(Exception):
    """A request the API answers with ``status`` and ``message`` (the field, what is wrong, the fix)."""

    status: int
    message: str


def submit_job(request: dict[str, Any], tenant: str, key: str | None, ledger: Ledger, settings: PlatformSettings,
               tenants: Tenants, airflow: AirflowGateway) -> tuple[dict[str, Any], bool]:
    """(the job, whether this call created it). A retried request with the same key returns its job."""
    conf = _checked_conf(request, tenant, tenants, settings)
    key = key or f"auto-{uuid.uuid4().hex}"  # recorded too: a job counts against the quota before it is queued
    earlier = ledger.claim_submission(tenant, key)
    if earlier == "":
        raise Refused(409, "a request with this Idempotency-Key is being submitted right now. Fix: retry in a few "
                           "seconds; it returns that job")
    if earlier is not None:
        return {"job_id": earlier, "status": _status(ledger, tenant, earlier)}, False
    try:
        check_quotas(ledger, tenant, key, tenants[tenant].quotas, airflow)
        run_id = airflow.trigger(conf)
    except BaseException:
        ledger.release_submission(tenant, key)
        raise
    ledger.complete_submission(tenant, key, run_id)
    return {"job_id": run_id, "status": "submitted"}, True


def check_before_storing(request: dict[str, Any], tenant: str, key: str | None, ledger: Ledger,
                         tenants: Tenants, airflow: AirflowGateway, upload_root: str) -> None:
    """What ``submit_job`` would refuse whatever the archive holds, asked before the archive is stored, so a
    bad spec or a full quota costs no copy: the spec, as if its dataset were under the upload prefix, and the
    quotas, unless the key already names a job (the retry gets that job)."""
    _checked_spec({**request, "dataset_uri": upload_root}, tenant, tenants)
    if key is None or ledger.submission_run(tenant, key) is None:
        check_quotas(ledger, tenant, key or "", tenants[tenant].quotas, airflow)


def _checked_conf(request: dict[str, Any], tenant: str, tenants: Tenants,
                  settings: PlatformSettings) -> dict[str, Any]:
    """The run's conf: the request's spec with the caller's tenant, checked as validate_request checks it."""
    spec, uri = _checked_spec(request, tenant, tenants)
    try:
        check_dataset_location(uri, tenant, tenants, settings)
    except LoraTaskError as exc:
        raise Refused(422, str(exc)) from None
    return {"job_spec": spec}


def _checked_spec(request: dict[str, Any], tenant: str, tenants: Tenants) -> tuple[dict[str, Any], str]:
    """The request's spec with the caller's tenant, and its dataset URI, checked by the job spec's schema."""
    check_known(tenant, tenants)
    unknown = set(request) - {"job_spec", "dataset_uri"}
    if unknown:
        raise Refused(422, f"{', '.join(sorted(unknown))}: not a field of a job request. Fix: send job_spec (a job "
                           "spec, as an object or YAML text) and, optionally, dataset_uri")
    try:
        check_conf_keys({"job_spec": request.get("job_spec")})
        spec = spec_data_from_conf({"job_spec": request.get("job_spec"), "dataset_uri": request.get("dataset_uri")})
        if spec.get("job") is None:
            spec["job"] = {}
        if isinstance(spec["job"], dict):  # anything else is refused by the schema, with its own words
            given = spec["job"].get("tenant")
            if given not in (None, tenant):
                raise Refused(422, f"job.tenant: {given!r} is not yours; the tenant comes from your API key "
                                   f"({tenant!r}). Fix: remove job.tenant")
            spec["job"]["tenant"] = tenant
        parsed = parse_job_spec(spec, "request")
    except LoraTaskError as exc:
        raise Refused(422, str(exc)) from None
    if not parsed.dataset.uri:
        raise Refused(422, "dataset_uri: missing. Fix: give dataset_uri (or dataset.uri in job_spec), a folder "
                           "or archive under your upload prefix")
    return spec, parsed.dataset.uri


def refuse_second_dataset(request: dict[str, Any]) -> None:
    """An uploaded archive is the job's dataset: a request that also names one would train on that and leave
    the upload stored for nothing."""
    if "dataset_uri" in request:
        raise Refused(422, "dataset_uri: given beside an uploaded dataset. Fix: send one of the two")
    try:
        dataset = spec_data_from_conf({"job_spec": request.get("job_spec")}).get("dataset")
    except LoraTaskError as exc:
        raise Refused(422, str(exc)) from None
    if isinstance(dataset, dict) and dataset.get("uri"):
        raise Refused(422, f"job_spec.dataset.uri: {dataset['uri']!r} given beside an uploaded dataset. Fix: leave "
                           "dataset.uri out of the job spec when you upload the archive, or send only the URI")


def check_known(tenant: str, tenants: Tenants) -> None:
    if tenant not in tenants:
        raise Refused(403, f"your key's tenant {tenant!r} is not configured on this platform. Fix: ask an operator "
                           "to add it to tenants.yaml")


def check_quotas(ledger: Ledger, tenant: str, key: str, quotas: Quotas, airflow: AirflowGateway) -> None:
    if quotas.concurrent_jobs is not None:
        pending = _pending(ledger, tenant, key, airflow)  # first: a run registered meanwhile then counts twice
        running = len(ledger.runs(tenant=tenant, statuses=UNFINISHED)) + pending
        if running >= quotas.concurrent_jobs:
            raise Refused(429, f"concurrent jobs: {running} of yours are queued or running, your quota is "
                               f"{quotas.concurrent_jobs}. Fix: wait for one to finish, or cancel one "
                               "(DELETE /lora/v1/jobs/{id})")
    if quotas.gpu_hours_per_month is not None:
        month = datetime.now(UTC).strftime("%Y-%m")
        used = sum(line.gpu_hours for line in ledger.bill(tenant, month))
        if used >= quotas.gpu_hours_per_month:
            raise Refused(429, f"GPU hours: {used:.1f} used in {month}, your quota is {quotas.gpu_hours_per_month}. "
                               "Fix: wait for next month, or ask an operator to raise the quota")


def _pending(ledger: Ledger, tenant: str, key: str, airflow: AirflowGateway) -> int:
    """The tenant's taken jobs whose runs are not registered yet, the one claimed with ``key`` left out.
    Airflow is asked about those taken more than ``REGISTER_GRACE`` ago: a run it ended (validate_request
    refused it) stops counting; one it still holds queued counts, however long it waits."""
    count = 0
    for job in ledger.unregistered_submissions(tenant):
        if job.ended or job.key == key:
            continue
        if job.run_id and datetime.now(UTC) - job.created_at > REGISTER_GRACE and \
                airflow.run_state(job.run_id) in ENDED:
            ledger.end_submission(tenant, job.key)
            continue
        count += 1
    return count


def cancel_job(run_id: str, tenant: str, ledger: Ledger, airflow: AirflowGateway) -> dict[str, Any]:
    """Stop the caller's queued or running job (Airflow's run state decides: the ledger marks training's end
    before evaluate and publish have run); a finished one is left as it is."""
    if ledger.tenant_run(tenant, run_id) is None and run_id not in ledger.submitted_runs(tenant):
        raise Refused(404, f"you have no job {run_id!r}. Fix: list yours with GET /lora/v1/jobs")
    state = airflow.run_state(run_id)
    if state in ENDED:
        raise Refused(409, f"job {run_id!r} has already ended ({state}); there is nothing to cancel")
    if not airflow.cancel(run_id):
        raise Refused(409, f"job {run_id!r} has no stage left to stop: its work is done and only its closing "
                           f"stages run. Fix: none needed; GET /lora/v1/jobs/{run_id} shows how it ends")
    ledger.close_run(run_id, "cancelled", datetime.now(UTC))
    return {"job_id": run_id, "status": "cancelled"}


def _status(ledger: Ledger, tenant: str, run_id: str) -> str:
    run = ledger.tenant_run(tenant, run_id)
    return run.status if run is not None else "submitted"

