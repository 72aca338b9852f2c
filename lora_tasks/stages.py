"""The job's stages as plain functions: what each DAG task calls, testable without Airflow.

Every stage reads the run's ``RunInfo`` (written by ``validate_request``), works only in
its own folder ``<workspace>/<tenant>/<run>/<stage>/``, and returns a small dict for XCom
(paths, counts, figures, and ``seconds``: its own compute time, which the orchestration
overhead figure subtracts from the run's wall time).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from lora_tasks.config import JobSpec, load_job_spec, parse_job_spec
from lora_tasks.errors import INPUT_ERROR_EXIT, DatasetError, LoraTaskError
from lora_tasks.gpu_types import load_gpu_types, resolve_gpu_type
from lora_tasks.ledger.store import open_ledger
from lora_tasks.pods import check_reachable_from_pods, pod_resources
from lora_tasks.recommend import ASSUMED_IMAGES, check_fits
from lora_tasks.request import PRIORITY_WEIGHTS, spec_data_from_conf
from lora_tasks.scheduling.duration import Prediction
from lora_tasks.settings import PlatformSettings
from lora_tasks.tenancy import check_tenant_access, load_tenants

STDERR_TAIL = 30


@dataclass(frozen=True)
class RunInfo:
    """What every stage needs to know about its run (the validate stage's XCom)."""

    tenant: str
    name: str
    priority: str
    gpu_type: str
    run_key: str
    workspace: str
    spec: str
    """The resolved job spec, every default filled in (validate/job.yaml)."""

    def stage(self, name: str) -> Path:
        path = Path(self.workspace) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_spec(self) -> JobSpec:
        return load_job_spec(self.spec)

    @classmethod
    def of(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def timed(function: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        return {**result, "seconds": round(time.perf_counter() - start, 3)}

    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


def run_key(run_id: str, run_after: datetime) -> str:
    """A short, path-safe, stable name for a run: its time and a hash of its id."""
    return f"{run_after:%Y%m%dT%H%M%SZ}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


@timed
def validate_request(conf: dict[str, Any], user: str | None, run_id: str, run_after: datetime,
                     settings: PlatformSettings, roles: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Parse and check the request before any data is read: spec, tenant (for ``user``, who has
    ``roles``), GPU type, base model."""
    from lora_tasks.base_model import check_spec_against_model

    spec = parse_job_spec(spec_data_from_conf(conf), "dag run conf")
    check_tenant_access(load_tenants(settings.tenants_file), spec.job.tenant, user, roles)
    gpu = resolve_gpu_type(spec.job.gpu_type, load_gpu_types(settings.gpu_types_file), settings.default_gpu_type)
    if not spec.dataset.uri:
        raise DatasetError("the run names no dataset. Fix: set dataset_uri in the trigger form (or dataset.uri "
                           "in job_spec)")
    if settings.runner == "kubernetes" and not gpu.is_gpu:
        raise LoraTaskError(f"job.gpu_type {gpu.name!r} has no GPU, and this platform trains in GPU pods. Fix: "
                            "choose a GPU type or 'auto'")
    spec, ref, warnings = check_spec_against_model(spec)
    if settings.runner == "kubernetes":
        check_reachable_from_pods(ref, spec.dataset.uri, settings)
    advice = check_fits(spec, gpu)  # refuses, with the estimate and the fix, a job that would not fit
    key = run_key(run_id, run_after)
    workspace = (settings.workspace / spec.job.tenant / key).resolve()
    resolved = spec.to_yaml_dict()
    resolved["job"]["gpu_type"] = gpu.name
    resolved["model_config"]["base_model"] = ref.location  # absolute: later stages run elsewhere
    if ref.config:
        resolved["model_config"]["base_model_config"] = ref.config
    resolved["output"]["uri"] = str(workspace / "train" / "output")
    resolved["training_config"].update(advice.settings())  # 'auto' resolved for this GPU type
    if "://" not in spec.dataset.uri:  # a local path: later stages may run in another directory
        resolved["dataset"]["uri"] = str(Path(spec.dataset.uri).expanduser().resolve())
    folder = workspace / "validate"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    info = RunInfo(tenant=spec.job.tenant, name=spec.job.name, priority=spec.job.priority, gpu_type=gpu.name,
                   run_key=key, workspace=str(workspace), spec=str(folder / "job.yaml"))
    open_ledger(settings.ledger_url).register_run(
        run_id, tenant=info.tenant, job=info.name, priority=info.priority, gpu_type=gpu.name, submitted_at=run_after,
        deadline=spec.job.deadline, predicted_peak_bytes=advice.estimate.total_bytes,
        features={"rank": spec.model.lora_rank, **advice.settings(), "resolution": spec.training.resolution})
    # a first prediction before the dataset is counted: the planner sees the run coming, and a
    # batch run's off-peak wait knows how late it may start; check_dataset refines it
    early = predict_training(info, info.load_spec(), ASSUMED_IMAGES, run_id, settings)
    return {**asdict(info), "pool": gpu.pool_for(spec.job.priority, settings.runner),
            "priority_weight": PRIORITY_WEIGHTS[spec.job.priority],
            "dataset_uri": spec.dataset.uri, "warnings": warnings, "resources": pod_resources(ref, advice.estimate),
            "gpu_product": gpu.node_selector.get("nvidia.com/gpu.product", ""), "tolerations": list(gpu.tolerations),
            "estimated_peak_bytes": advice.estimate.total_bytes, "settings": advice.settings(),
            "deadline": spec.job.deadline.isoformat() if spec.job.deadline else None,
            "predicted_seconds": early.seconds}


@timed
def scan(info: RunInfo) -> dict[str, Any]:
    from lora_tasks.scan import scan_dataset

    spec = info.load_spec()
    out = info.stage("scan") / "manifest.jsonl"
    rows = scan_dataset(str(spec.dataset.uri), out, spec.dataset.caption_extension)
    return {"manifest": str(out), "files": len(rows)}


@timed
def filter_content(info: RunInfo, manifest: str) -> dict[str, Any]:
    from lora_tasks.filter import filter_manifest

    spec = info.load_spec()
    folder = info.stage("filter")
    result = filter_manifest(Path(manifest), folder, spec.dataset.filter, spec.job.task)
    return {"kept": str(folder / "kept.jsonl"), "rejected": str(folder / "rejected.jsonl"),
            "summary": {k: result.summary[k] for k in ("samples", "kept", "rejected", "reasons")}}


@timed
def caption(info: RunInfo, kept: str) -> dict[str, Any]:
    from lora_tasks.auto_label import auto_label, load_text_tokenizer

    spec = info.load_spec()
    folder = info.stage("caption")
    rows = auto_label(Path(kept), folder, spec.dataset.caption, spec.dataset.trigger_word,
                      load_text_tokenizer(spec), spec.dataset.caption_extension)
    return {"captioned": str(folder / "captioned.jsonl"),
            "sources": {s: sum(r.caption_source == s for r in rows) for s in ("sidecar", "auto", "filename")}}


@timed
def check_dataset(info: RunInfo, captioned: str, rejected: str, run_id: str,
                  settings: PlatformSettings) -> dict[str, Any]:
    """Run the data checks; on success split off the held-out images the evaluate stage uses."""
    from data_checks import run_checks
    from lora_tasks.evaluate import split_holdout
    from lora_tasks.manifest import read_rows, write_rows

    spec = info.load_spec()
    folder = info.stage("check")
    kept = read_rows(Path(captioned))
    report = run_checks(kept, read_rows(Path(rejected)), spec.dataset.checks, spec.job.task)
    (folder / "report.txt").write_text(report.text() + "\n")
    (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2))
    if not report.passed:
        raise DatasetError(f"{report.text()}\nFix: the report names each failed expectation and the observed value; "
                           "correct the upload or relax dataset.checks")
    train_rows, holdout_rows = split_holdout(kept, spec.eval)
    write_rows(folder / "train.jsonl", train_rows)
    write_rows(folder / "holdout.jsonl", holdout_rows or train_rows)
    prediction = predict_training(info, spec, len(train_rows), run_id, settings)
    return {"train": str(folder / "train.jsonl"), "holdout": str(folder / "holdout.jsonl"),
            "train_images": len(train_rows), "holdout_images": len(holdout_rows),
            "predicted_seconds": prediction.seconds, "predicted_interval": [prediction.low, prediction.high]}


def predict_training(info: RunInfo, spec: JobSpec, images: int, run_id: str,
                     settings: PlatformSettings) -> Prediction:
    """Predict the train stage's duration from its workload and the ledger's history; record it."""
    from lora_tasks.recommend import model_shapes
    from lora_tasks.scheduling.duration import DurationModel, Workload
    from lora_tasks.scheduling.memory import forward_flops

    training = spec.training
    batch = training.batch_size if training.batch_size != "auto" else 1
    steps = training.max_steps or training.epochs * math.ceil(images / (batch * training.gradient_accumulation_steps))
    flops = forward_flops(model_shapes(spec), training.resolution, spec.model.lora_rank,
                          tuple(spec.model.target_modules))
    work = Workload.of(flops, batch, training.gradient_accumulation_steps, steps, images, training.resolution)
    ledger = open_ledger(settings.ledger_url)
    history = [(Workload.from_features(r.features), r.actual_seconds)  # runs whose training succeeded
               for r in ledger.runs(gpu_type=info.gpu_type) if r.actual_seconds and "flops" in r.features]
    gpu_types = load_gpu_types(settings.gpu_types_file)
    prediction = DurationModel({info.gpu_type: gpu_types[info.gpu_type]}, {info.gpu_type: history}).predict(
        info.gpu_type, work)
    ledger.record_prediction(run_id, seconds=prediction.seconds, low=prediction.low, high=prediction.high,
                             peak_bytes=None, features={"flops": work.flops, "images": images, "steps": steps,
                                                        "resolution": training.resolution})
    return prediction


def train_command(info: RunInfo, dataset: str) -> list[str]:
    """The trainer's command line: identical for the local subprocess and the pod."""
    return ["python", "-m", "lora_tasks.train", "--config", info.spec, "--dataset", dataset,
            "--output", str(Path(info.workspace) / "train" / "output")]


@timed
def train_locally(info: RunInfo, dataset: str) -> dict[str, Any]:
    """Run the trainer as a subprocess; it resumes from its newest checkpoint when retried."""
    command = [sys.executable, *train_command(info, dataset)[1:]]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    tail: deque[str] = deque(maxlen=STDERR_TAIL)
    assert process.stderr is not None
    for line in process.stderr:  # shown live in the task log, and the end kept for the error message
        sys.stderr.write(line)
        tail.append(line.rstrip())
    code = process.wait()
    if code == INPUT_ERROR_EXIT:  # the trainer's "your input needs fixing": retrying cannot help
        raise LoraTaskError("\n".join(line for line in tail if line.startswith("error:")) or "\n".join(tail))
    if code != 0:
        raise RuntimeError(f"the trainer exited with status {code}:\n" + "\n".join(tail))
    return training_result(info)


def training_result(info: RunInfo) -> dict[str, Any]:
    """What the trainer left in the workspace (both runners)."""
    adapter = Path(info.workspace) / "train" / "output" / "adapter"
    summary = json.loads((adapter / "training_summary.json").read_text())
    return {"adapter": str(adapter), "steps": summary["steps"], "peak_memory_bytes": summary["peak_memory_bytes"],
            "train_loss": summary["train_loss"], "median_step_seconds": summary["median_step_seconds"]}


@timed
def evaluate(info: RunInfo, adapter: str, holdout: str, held_out: bool = True) -> dict[str, Any]:
    from lora_tasks.evaluate import evaluate_adapter

    folder = info.stage("evaluate")
    report = evaluate_adapter(info.load_spec(), Path(adapter), Path(holdout), folder, held_out=held_out)
    return {"report": str(folder / "eval_report.json"), **report}


@timed
def publish(info: RunInfo, adapter: str, eval_report: str, settings: PlatformSettings,
            run_id: str) -> dict[str, Any]:
    """Copy the adapter, its spec and reports into the artifact store as an immutable version."""
    from lora_tasks.artifacts import open_store
    from lora_tasks.publish import publish_version, version_prefix

    store = open_store(settings.artifact_root, settings.s3_endpoint_url)
    files = {p.name: p for p in sorted(Path(adapter).iterdir()) if p.is_file()}
    files["eval_report.json"] = Path(eval_report)
    manifest = publish_version(store, info.tenant, info.name, info.run_key, files,
                               {"run_id": run_id, "priority": info.priority, "gpu_type": info.gpu_type,
                                "eval": json.loads(Path(eval_report).read_text())})
    return {"uri": f"{store.uri}/{version_prefix(info.tenant, info.name, info.run_key)}",
            "version": info.run_key, "files": len(manifest["files"])}


def cleanup(info: RunInfo, succeeded: bool, run_id: str, settings: PlatformSettings,
            stage_seconds: dict[str, float]) -> dict[str, Any]:
    """Record the stages' timings; remove the run's workspace once published, keep it after a
    failure (for debugging and resume) and take the run out of the planner's queue."""
    ledger = open_ledger(settings.ledger_url)
    for stage, seconds in stage_seconds.items():
        ledger.record_stage(run_id, stage, seconds)
    if not succeeded:
        ledger.close_run(run_id, "failed", datetime.now(UTC))
        return {"kept_workspace": info.workspace}
    shutil.rmtree(info.workspace, ignore_errors=True)
    return {"removed_workspace": info.workspace}
