"""The first stage: a run's request checked before any data is read (spec, tenant, GPU type, base model,
memory fit, what a pod can reach), resolved into the job spec every later stage reads, registered
in the ledger with a first duration prediction, and admitted (its predicted start and finish on the
bounded fleet against its deadline: ``pipeline.admission``)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from lora_tasks.clock import utc_now
from lora_tasks.errors import DatasetError, LoraTaskError, ProblemCollector
from lora_tasks.gpu_types import load_gpu_types, resolve_gpu_type
from lora_tasks.ledger.store import open_ledger
from lora_tasks.pipeline.admission import admit_run
from lora_tasks.pipeline.data_access import check_dataset_location, check_model_location
from lora_tasks.pipeline.pods import check_reachable_from_pods, pod_resources
from lora_tasks.pipeline.prediction import predict_training
from lora_tasks.pipeline.stages import timed
from lora_tasks.pipeline.tenancy import Tenants, check_tenant_access, load_tenants
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.scheduling.recommend import ASSUMED_IMAGES, check_fits
from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.settings import PlatformSettings
from lora_tasks.spec.conf import PRIORITY_WEIGHTS, check_conf_keys, spec_data_from_conf
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores.locations import Location


@timed
def validate_request(conf: dict[str, Any], user: str | None, run_id: str, run_after: datetime,
                     settings: PlatformSettings, roles: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Parse and check the request before any data is read: conf keys, spec, tenant (for ``user``, who has
    ``roles``), what the run may read, GPU type, base model."""
    from lora_tasks.spec.base_model import check_spec_against_model, locate_base_model

    check_conf_keys(conf)
    spec = parse_job_spec(spec_data_from_conf(conf), "dag run conf")
    tenants = load_tenants(settings.tenants_file)
    check_tenant_access(tenants, spec.job.tenant, user, roles)
    gpu = resolve_gpu_type(spec.job.gpu_type, load_gpu_types(settings.gpu_types_file), settings.default_gpu_type)
    found = ProblemCollector(spec.source)
    dataset = found.check("dataset.uri", lambda: _dataset_location(spec, tenants, settings))
    model = found.check("model_config.base_model", lambda: locate_base_model(spec))
    found.raise_found()
    assert dataset is not None and model is not None  # raise_found raised otherwise
    if model.kind != "hub":
        check_model_location(model.location, spec.job.tenant, tenants, settings, "model_config.base_model")
    if spec.model.base_model_config and Path(spec.model.base_model_config).expanduser().exists():
        check_model_location(spec.model.base_model_config, spec.job.tenant, tenants, settings,
                             "model_config.base_model_config")
    if settings.runner == "kubernetes" and not gpu.is_gpu:
        raise LoraTaskError(f"job.gpu_type {gpu.name!r} has no GPU, and this platform trains in GPU pods. Fix: "
                            "choose a GPU type or 'auto'")
    spec, ref, warnings = check_spec_against_model(spec)
    if settings.runner == "kubernetes":
        check_reachable_from_pods(ref, spec.dataset.uri, settings)
    advice = check_fits(spec, gpu)  # refuses, with the estimate and the fix, a job that would not fit
    info = RunInfo.new(settings.workspace, spec.job.tenant, spec.job.name, spec.job.priority, gpu.name, run_id,
                       run_after)
    resolved = spec.to_yaml_dict()
    resolved["job"]["gpu_type"] = gpu.name
    resolved["model_config"]["base_model"] = ref.location  # absolute: later stages run elsewhere
    if ref.config:
        resolved["model_config"]["base_model_config"] = ref.config
    resolved["output"]["uri"] = str(info.train_output)
    resolved["training_config"].update(advice.settings())  # 'auto' resolved for this GPU type
    resolved["training_config"]["compare_at_end"] = False  # the evaluate stage compares, on held-out data
    resolved["dataset"]["uri"] = str(dataset)  # links and '..' resolved: what was checked is what is read
    info.write_spec(resolved)
    ledger = open_ledger(settings.ledger_url)
    ledger.register_run(
        run_id, tenant=info.tenant, job=info.name, priority=info.priority, gpu_type=gpu.name, submitted_at=run_after,
        deadline=spec.job.deadline, predicted_peak_bytes=advice.estimate.total_bytes,
        features={"rank": spec.model.lora_rank, **advice.settings(), "resolution": spec.training.resolution})
    # a first prediction before the dataset is counted: the planner sees the run coming, and a
    # batch run's off-peak wait knows how late it may start; check_dataset refines it
    early = predict_training(info, info.load_spec(), ASSUMED_IMAGES, run_id, settings)
    run = ledger.find_run(run_id)
    assert run is not None  # registered above
    admission = admit_run(ledger, run, gpu, tenants[spec.job.tenant].admission, load_calendar(settings.scheduling_file),
                          utc_now(), settings.runner)  # refuses a late run its tenant refuses, with the finish and fix
    return {**asdict(info), "pool": gpu.pool_for(spec.job.priority, settings.runner),
            "priority_weight": PRIORITY_WEIGHTS[spec.job.priority],
            "dataset_uri": spec.dataset.uri, "warnings": warnings, "resources": pod_resources(ref, advice.estimate),
            "gpu_product": gpu.node_selector.get("nvidia.com/gpu.product", ""), "tolerations": list(gpu.tolerations),
            "estimated_peak_bytes": advice.estimate.total_bytes, "settings": advice.settings(),
            "deadline": spec.job.deadline.isoformat() if spec.job.deadline else None,
            "predicted_seconds": early.seconds, "admission": admission.record()}


def _dataset_location(spec: JobSpec, tenants: Tenants, settings: PlatformSettings) -> Location:
    if not spec.dataset.uri:
        raise DatasetError("the run names no dataset. Fix: set dataset_uri in the trigger form (or dataset.uri "
                           "in job_spec)")
    return check_dataset_location(spec.dataset.uri, spec.job.tenant, tenants, settings)
