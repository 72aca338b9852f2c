"""The tenant API (``/lora/v1``): what a tenant sees of its own jobs, adapters and bill, and nothing of
anyone else's.

Mounted in Airflow's api-server by the plugin in ``lora_airflow.front_door`` (``fastapi_apps``), or run on
its own (``python -m lora_tasks.tenants serve``). The tenant comes from the caller's API key, never from the
request; another tenant's job, adapter or bill answers 404, the same as one that does not exist, so ids and
names do not leak. Errors are JSON ``{"detail": ...}`` naming the field and the fix; the OpenAPI docs are
at ``/lora/v1/docs``.

No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at runtime.
"""

from datetime import datetime
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from lora_tasks.errors import StoreError
from lora_tasks.ledger.adapters import AdapterVersion
from lora_tasks.ledger.key_header import tenant_dependency
from lora_tasks.ledger.models import Run
from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.pipeline.tenancy import load_tenants
from lora_tasks.settings import PlatformSettings
from lora_tasks.stores import open_store
from lora_tasks.stores.versions import CARD_FILE, GRID_FILE, published_file
from lora_tasks.tenants.gateway import AirflowGateway, AirflowUnavailable
from lora_tasks.tenants.jobs import (
    Refused,
    cancel_job,
    check_before_storing,
    check_known,
    refuse_second_dataset,
    submit_job,
)
from lora_tasks.tenants.progress import predicted_finish, stage_report, stage_reports, training_progress
from lora_tasks.tenants.uploads import counted, refuse_declared_size, store_upload, upload_root

PREFIX = "/lora/v1"
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"
JSON_MAX_BYTES = 1 << 20
"""A job request without an archive: a spec and a URI; a body above this is not one."""
SPEC_FIX = "a job request is a job spec and a dataset URI; send the dataset itself as the multipart file 'dataset'"


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    """The API on this installation's ledger and artifact store (routes at ``/``: the mount adds the prefix)."""
    settings = settings or PlatformSettings()
    ledger = LazyLedger(settings.ledger_url)
    gateway = AirflowGateway(settings.gateway_url, settings.gateway_user, settings.gateway_password)
    app = FastAPI(title="LoRA platform: tenant API", version="1",
                  description="Submit data, watch jobs, find and use adapters. Every call needs an API key.")
    Tenant = Annotated[str, Depends(tenant_dependency(lambda key: ledger.tenant_for_api_key(key)))]

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "; ".join(_sentence(e) for e in exc.errors())}, status_code=422)

    @app.get("/jobs")
    def jobs(caller: Tenant, limit: Annotated[int, Query(ge=1, le=100)] = 20,
             offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """The caller's jobs, newest first (``limit`` of them after ``offset``), each as GET /jobs/{id} shows it;
        ``total`` counts them all."""
        runs: list[tuple[datetime, str, Run | None]] = [(r.submitted_at, r.run_id, r)
                                                        for r in ledger.runs(tenant=caller)]
        runs += [(job.created_at, job.run_id, None) for job in ledger.unregistered_submissions(caller) if job.run_id]
        page = sorted(runs, key=lambda entry: entry[0], reverse=True)[offset:offset + limit]
        reports = stage_reports(gateway, [run_id for _, run_id, _ in page])
        published = _published_by_run(ledger, caller)
        return {"total": len(runs), "jobs": [
            _job(run, published.get(run_id), reports[run_id]) if run else _taken(run_id, at, reports[run_id])
            for at, run_id, run in page]}

    @app.get("/jobs/{job_id}")
    def job(job_id: str, caller: Tenant) -> dict[str, Any]:
        """The job's state, each stage's, the training step of the total and the latest loss, the predicted
        finish, GPU time and cost, why it failed (in its log's words) and its published adapter."""
        run = ledger.tenant_run(caller, job_id)
        if run is None:  # perhaps taken but not registered (yet, or refused by its first stage)
            taken = next((job for job in ledger.unregistered_submissions(caller) if job.run_id == job_id), None)
            if taken is not None:
                return _taken(job_id, taken.created_at, stage_report(gateway, job_id))
            raise HTTPException(404, f"you have no job {job_id!r}. Fix: list yours with GET {PREFIX}/jobs")
        return _job(run, _published_by_run(ledger, caller).get(job_id), stage_report(gateway, job_id))

    def _job(run: Run, adapter: AdapterVersion | None, report: dict[str, Any]) -> dict[str, Any]:
        view = job_view(run, ledger.stage_seconds(run.run_id), adapter)
        progress = training_progress(settings.workspace, run, adapter.figures if adapter else None)
        return {**view, "progress": progress, **report}

    @app.post("/jobs", status_code=201, openapi_extra=SUBMISSION_BODY)
    async def submit(request: Request, caller: Tenant, response: Response,
                     idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
        """Take a job: a job spec and its dataset, either under your upload prefix (JSON, ``dataset_uri``) or
        sent along as an archive (multipart: ``job_spec`` and the file ``dataset``, stored under your upload
        prefix once it passes the checks). It is checked, counted against your quotas and queued. The same
        ``Idempotency-Key`` returns the same job (200) however often sent."""
        try:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                job, created = await _submit_upload(request, caller, idempotency_key)
            else:
                fields = await _json_fields(request)
                job, created = await run_in_threadpool(_answer, lambda: _take(fields, None, caller, idempotency_key))
        except Refused as refusal:
            raise HTTPException(refusal.status, refusal.message) from None
        if not created:
            response.status_code = 200
        return job

    async def _submit_upload(request: Request, caller: str, key: str | None) -> tuple[dict[str, Any], bool]:
        refuse_declared_size(request.headers, settings.upload_max_bytes)
        try:
            form = await Request(request.scope, counted(request.receive, settings.upload_max_bytes)).form(
                max_files=2, max_fields=4)
        except StarletteHTTPException as exc:  # Starlette's words about the multipart body, without a fix
            raise Refused(exc.status_code, f"{exc.detail} Fix: send two parts, job_spec (text, or a file: curl -F "
                                           "job_spec=@job.yaml) and the file dataset") from None
        try:
            archives = form.getlist("dataset")
            if len(archives) != 1 or not isinstance(archives[0], UploadFile):
                raise Refused(422, "dataset: a multipart job request holds exactly one archive, the file part "
                                   "'dataset'. Fix: send one (curl -F dataset=@photos.zip), or send JSON with "
                                   "dataset_uri")
            fields = {name: await _text_part(name, value) for name, value in form.items() if name != "dataset"}
            return await run_in_threadpool(_answer, lambda: _take(fields, archives[0], caller, key))
        finally:
            await form.close()

    def _take(fields: dict[str, Any], archive: UploadFile | None, caller: str,
              key: str | None) -> tuple[dict[str, Any], bool]:
        """Submit, with the archive stored first (and removed again if the job is not taken)."""
        tenants = load_tenants(settings.tenants_file)
        stored = None
        if archive is not None:
            refuse_second_dataset(fields)
            check_known(caller, tenants)
            root = upload_root(caller, tenants, settings)
            check_before_storing(fields, caller, key, ledger.ledger, tenants, gateway, str(root))
            stored = store_upload(archive.file, archive.filename, root, settings.s3_endpoint_url)
            fields = {**fields, "dataset_uri": stored.uri}
        try:
            job, created = submit_job(fields, caller, key, ledger.ledger, settings, tenants, gateway)
        except BaseException:
            if stored:
                stored.discard()
            raise
        if stored and not created:
            stored.discard()  # a retried request: its job already has the first copy
        return job, created

    @app.delete("/jobs/{job_id}")
    def cancel(job_id: str, caller: Tenant) -> dict[str, Any]:
        """Cancel a queued or running job: its training stops (the pod is deleted) and so does its bill."""
        return _answer(lambda: cancel_job(job_id, caller, ledger.ledger, gateway))

    @app.get("/adapters")
    def adapters(caller: Tenant) -> dict[str, Any]:
        """The caller's published adapters, each with its versions."""
        names: dict[str, list[AdapterVersion]] = {}
        for version in ledger.adapter_versions(tenant=caller):
            names.setdefault(version.name, []).append(version)
        return {"adapters": [{"name": name, "latest": versions[-1].ref, "versions": [v.version for v in versions]}
                             for name, versions in sorted(names.items())]}

    @app.get("/adapters/{name}")
    def adapter(name: str, caller: Tenant) -> dict[str, Any]:
        """The adapter's versions with their figures, the newest one's model card, and a link to its sample grid
        (base and LoRA side by side; none for a text adapter)."""
        versions = _versions(name, caller)
        store = open_store(settings.artifact_root, settings.s3_endpoint_url)
        latest = versions[-1]
        grid = published_file(caller, name, latest.version, GRID_FILE)
        try:
            has_grid = store.exists(grid)
        except StoreError:  # the store not answering: the rest of the answer stands
            has_grid = False
        return {"name": name, "latest": latest.ref, "versions": [version_view(v) for v in versions],
                "model_card": _read_text(store, published_file(caller, name, latest.version, CARD_FILE)),
                "sample_grid": f"{PREFIX}/adapters/{name}/{GRID_FILE}?version={latest.version}"
                if has_grid else None}

    @app.get("/adapters/{name}/" + GRID_FILE, response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def sample_grid(name: str, caller: Tenant, version: Annotated[int | None, Query(ge=1)] = None) -> Response:
        """The sample grid of a version (default: the newest) as a PNG."""
        versions = _versions(name, caller)
        chosen = next((v for v in versions if v.version == version), None) if version else versions[-1]
        if chosen is None:
            raise HTTPException(404, f"{name!r} has no version {version}. Fix: one of "
                                     f"{', '.join(str(v.version) for v in versions)}")
        try:
            data = open_store(settings.artifact_root, settings.s3_endpoint_url).read(
                published_file(caller, name, chosen.version, GRID_FILE))
        except StoreError:
            raise HTTPException(404, f"{chosen.ref} was published without a sample grid (a text adapter, or no "
                                     f"eval prompts). Fix: see its figures in GET {PREFIX}/adapters/{name}") from None
        return Response(data, media_type="image/png")

    def _versions(name: str, caller: str) -> list[AdapterVersion]:
        versions = ledger.adapter_versions(tenant=caller, name=name)
        if not versions:
            raise HTTPException(404, f"you have no adapter {name!r}. Fix: list yours with GET {PREFIX}/adapters")
        return versions

    @app.get("/bill")
    def bill(caller: Tenant, month: Annotated[str, Query(pattern=MONTH, description="YYYY-MM")]) -> dict[str, Any]:
        """GPU time and cost of the caller's runs that finished in ``month``, per run and in total."""
        lines = ledger.bill(caller, month)
        by_type: dict[str, dict[str, float]] = {}
        for line in lines:
            entry = by_type.setdefault(line.gpu_type, {"gpu_seconds": 0.0, "cost": 0.0})
            entry["gpu_seconds"] += line.gpu_hours * 3600
            entry["cost"] += line.cost
        return {"tenant": caller, "month": month,
                "jobs": [{"job_id": line.run_id, "job": line.job, "gpu_type": line.gpu_type, "status": line.status,
                          "gpu_seconds": line.gpu_hours * 3600, "off_peak_share": line.off_peak_share,
                          "cost": line.cost} for line in lines],
                "by_gpu_type": by_type,
                "total": {"gpu_seconds": sum(line.gpu_hours for line in lines) * 3600,
                          "cost": sum(line.cost for line in lines)}}

    return app


class LazyLedger:
    """The ledger, opened on the first request: the plugin builds the app wherever Airflow loads plugins
    (the scheduler, every task), and only the api-server ever serves it."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def ledger(self) -> Ledger:
        return open_ledger(self.url)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_spec: dict[str, Any] | str = Field(description="a job spec (object, or YAML text), as a DAG run takes it")
    dataset_uri: str | None = Field(None, description="the dataset, under your upload prefix; or dataset.uri")


SUBMISSION_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": JobRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["job_spec", "dataset"], "properties": {
        "job_spec": {"type": "string", "description": "the job spec, as YAML or JSON text"},
        "dataset": {"type": "string", "format": "binary",
                    "description": "the dataset as a .zip, .tar or .tar.gz (at most LORA_UPLOAD_MAX_BYTES)"}}}}}}}


async def _text_part(name: str, value: str | UploadFile) -> str:
    """A form field's text, also when it came as a file part (``curl -F job_spec=@job.yaml``)."""
    if isinstance(value, str):
        return value
    data = await value.read(JSON_MAX_BYTES + 1)
    if len(data) > JSON_MAX_BYTES:
        raise Refused(413, f"{name}: the file passes {JSON_MAX_BYTES:,} bytes; a job spec is a few lines of YAML. "
                           "Fix: send the job spec alone in this part, and the dataset as the file part 'dataset'")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise Refused(422, f"{name}: {value.filename!r} is not UTF-8 text. Fix: send the job spec as YAML or "
                           "JSON text") from None


async def _json_fields(request: Request) -> dict[str, Any]:
    refuse_declared_size(request.headers, JSON_MAX_BYTES, SPEC_FIX)
    try:
        body = await Request(request.scope, counted(request.receive, JSON_MAX_BYTES, SPEC_FIX)).json()
    except ValueError:
        raise Refused(422, "the body is not JSON. Fix: send a JSON object {job_spec, dataset_uri} with "
                           "Content-Type: application/json, or multipart with job_spec and the file dataset") from None
    try:
        return JobRequest.model_validate(body).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise Refused(422, "; ".join(_sentence({**e, "loc": ("body", *e["loc"])}) for e in exc.errors())) from None


def _answer(call: Any) -> Any:
    """``call()``, with a refusal as its HTTP status and Airflow's absence as 503."""
    try:
        return call()
    except Refused as refusal:
        raise HTTPException(refusal.status, refusal.message) from None
    except ValueError as exc:  # Airflow refused the run's conf (the DAG's params)
        raise HTTPException(422, f"the job was refused: {exc}. Fix: correct the job spec") from None
    except AirflowUnavailable as exc:
        raise HTTPException(503, f"the platform cannot queue jobs right now ({exc}). Fix: retry later") from None


def job_view(run: Run, stages: dict[str, float], adapter: AdapterVersion | None) -> dict[str, Any]:
    """A job as its tenant sees it: state, times, the predicted finish, GPU time and cost, the stages done."""
    return {"job_id": run.run_id, "job": run.job, "priority": run.priority, "gpu_type": run.gpu_type,
            "status": run.status, "submitted_at": _iso(run.submitted_at), "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at), "deadline": _iso(run.deadline),
            "predicted_finish": _iso(predicted_finish(run)), "admission": run.admission, "stage_seconds": stages,
            "gpu_seconds": run.gpu_seconds, "cost": run.cost,
            "adapter": {"ref": adapter.ref, "uri": adapter.uri} if adapter else None}


def _taken(job_id: str, submitted_at: datetime | None, report: dict[str, Any]) -> dict[str, Any]:
    """A job Airflow holds but the ledger does not yet: queued, or refused by its first stage."""
    failed = "failure" in report or (report["stages"] or {}).get("validate_request") == "failed"
    return {"job_id": job_id, "status": "failed" if failed else "submitted", "submitted_at": _iso(submitted_at),
            **report}


def version_view(version: AdapterVersion) -> dict[str, Any]:
    return {"version": version.version, "ref": version.ref, "uri": version.uri, "formats": version.formats,
            "base_model": version.base_model, "figures": version.figures, "public": version.public,
            "published_at": _iso(version.published_at), "job_id": version.run_id}


def _published_by_run(ledger: Any, tenant: str) -> dict[str, AdapterVersion]:
    return {v.run_id: v for v in ledger.adapter_versions(tenant=tenant)}


def _read_text(store: Any, key: str) -> str | None:
    try:
        return store.read(key).decode()
    except StoreError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _sentence(error: dict[str, Any]) -> str:
    """A validation error as 'month: ... Fix: ...' (the field, what is wrong, how to mend it)."""
    field = ".".join(str(p) for p in error["loc"] if p not in {"query", "body", "path"}) or "the body"
    if error["type"] == "missing":
        return f"{field} is missing. Fix: add it (see {PREFIX}/docs)"
    if field == "month":
        return f"month: {error.get('input')!r} is not a month. Fix: ?month=YYYY-MM, such as ?month=2026-11"
    return f"{field}: {error['msg']}. Fix: see {PREFIX}/docs"
