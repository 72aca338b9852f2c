"""The job's stages as plain functions: what each DAG task calls, testable without Airflow.

Every stage reads the run's ``RunInfo`` (written by ``validate_request``), works only in
its own folder ``<workspace>/<tenant>/<run>/<stage>/``, and returns a small dict for XCom
(paths, counts, figures, and ``seconds``: its own compute time, which the orchestration
overhead figure subtracts from the run's wall time).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lora_tasks.clock import Clock, utc_now
from lora_tasks.errors import DatasetError
from lora_tasks.ledger.store import open_ledger
from lora_tasks.pipeline.prediction import predict_training
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.settings import PlatformSettings
from lora_tasks.train.outputs import EVAL_HEADLINE


def timed(function: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        return {**result, "seconds": round(time.perf_counter() - start, 3)}

    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


@timed
def scan(info: RunInfo) -> dict[str, Any]:
    from lora_tasks.intake.scan import scan_dataset

    spec = info.load_spec()
    out = info.stage("scan") / "manifest.jsonl"
    rows = scan_dataset(str(spec.dataset.uri), out, spec.dataset.caption_extension, archives=spec.dataset.archives)
    return {"manifest": str(out), "files": len(rows)}


@timed
def filter_content(info: RunInfo, manifest: str) -> dict[str, Any]:
    from lora_tasks.intake.filter import filter_manifest

    spec = info.load_spec()
    folder = info.stage("filter")
    result = filter_manifest(Path(manifest), folder, spec.dataset.filter, spec.job.task,
                             background=spec.dataset.background)
    return {"kept": str(folder / "kept.jsonl"), "rejected": str(folder / "rejected.jsonl"),
            "summary": {k: result.summary[k] for k in ("samples", "kept", "rejected", "reasons", "records")}}


@timed
def caption(info: RunInfo, kept: str) -> dict[str, Any]:
    from lora_tasks.intake.caption import caption_images, load_text_tokenizer

    spec = info.load_spec()
    folder = info.stage("caption")
    if spec.job.task == "text":  # nothing to caption: the records are passed on as the filter kept them
        from lora_tasks.intake.manifest import read_rows, write_rows

        rows = read_rows(Path(kept))
        write_rows(folder / "captioned.jsonl", rows)
        return {"captioned": str(folder / "captioned.jsonl"), "sources": {}, "caption_fallbacks": 0,
                "files": len(rows)}
    rows = caption_images(Path(kept), folder, spec.dataset.caption, spec.dataset.trigger_word,
                          load_text_tokenizer(spec), spec.dataset.caption_extension,
                          background=spec.dataset.background)
    return {"captioned": str(folder / "captioned.jsonl"),
            "sources": {s: sum(r.caption_source == s for r in rows) for s in ("sidecar", "auto", "filename")},
            "caption_fallbacks": sum(bool(r.caption_problem) for r in rows)}


@timed
def check_dataset(info: RunInfo, captioned: str, rejected: str, run_id: str,
                  settings: PlatformSettings) -> dict[str, Any]:
    """Run the data checks; on success split off the held-out images the evaluate stage uses."""
    from lora_tasks.intake.check import check_samples
    from lora_tasks.intake.holdout import holdout_count, split_holdout
    from lora_tasks.intake.manifest import read_rows, write_rows

    spec = info.load_spec()
    folder = info.stage("check")
    kept, refused = read_rows(Path(captioned)), read_rows(Path(rejected))
    report = check_samples(kept, refused, spec.dataset.checks, spec.job.task, folder)
    if not report.passed:
        raise DatasetError(f"{report.text()}\n{rejection_summary(refused)}Fix: the report names each failed "
                           "expectation and the observed value; correct the upload or relax dataset.checks")
    if spec.job.task == "text":  # a file holds many records: the trainer holds records out, by content
        train_rows, holdout_rows = kept, kept
        records = sum(row.records or 0 for row in kept)  # counted by the filter
        samples = records - holdout_count(records, spec.eval)
    else:
        train_rows, holdout_rows = split_holdout(kept, spec.eval)
        samples = len(train_rows)
    write_rows(folder / "train.jsonl", train_rows)
    write_rows(folder / "holdout.jsonl", holdout_rows or train_rows)
    prediction = predict_training(info, spec, samples, run_id, settings)
    return {"train": str(folder / "train.jsonl"), "holdout": str(folder / "holdout.jsonl"),
            "train_images": len(train_rows), "holdout_images": len(holdout_rows),
            "predicted_seconds": prediction.seconds, "predicted_interval": [prediction.low, prediction.high]}


TOP_REASONS = 5


def rejection_summary(rejected: list[Any]) -> str:
    """The filter's most frequent rejection reasons with counts and an example each, for a failed check's
    message (the rows themselves sit in the filter stage's rejected.jsonl)."""
    samples = [r for r in rejected if r.role == "sample"]
    if not samples:
        return ""
    reasons = Counter(r.reason or r.error or "unknown" for r in samples)
    lines = [f"the filter rejected {len(samples)} file(s); top reasons:"]
    for reason, count in reasons.most_common(TOP_REASONS):
        example = next(r for r in samples if (r.reason or r.error or "unknown") == reason)
        detail = example.message or example.error_detail or ""
        lines.append(f"  - {reason}: {count} (e.g. {example.path}{': ' + detail if detail else ''})")
    if len(reasons) > TOP_REASONS:
        lines.append(f"  - {len(reasons) - TOP_REASONS} other reason(s)")
    return "\n".join(lines) + "\n"


@timed
def evaluate(info: RunInfo, adapter: str, holdout: str, held_out: bool = True) -> dict[str, Any]:
    from lora_tasks.train.evaluate import evaluate_adapter

    folder = info.stage("evaluate")
    report = evaluate_adapter(info.load_spec(), Path(adapter), Path(holdout), folder, held_out=held_out)
    headline = (*EVAL_HEADLINE, "max_loss_ratio", "clip_score", "sample_grid")
    return {"report": str(folder / "eval_report.json"), "samples": len(report["samples"]),
            **{key: report.get(key) for key in headline}}


@timed
def publish(info: RunInfo, adapter: str, eval_report: str, settings: PlatformSettings,
            run_id: str) -> dict[str, Any]:
    """The adapter, its model card, evaluation and spec as the next immutable version of its name."""
    from lora_tasks.publish.publish import publish_adapter
    from lora_tasks.stores import open_store

    result = publish_adapter(open_store(settings.artifact_root, settings.s3_endpoint_url),
                             open_ledger(settings.ledger_url), spec=info.load_spec(), run_id=run_id,
                             adapter_dir=Path(adapter), eval_dir=Path(eval_report).parent,
                             metadata={"priority": info.priority, "gpu_type": info.gpu_type})
    return {"uri": result.uri, "version": f"v{result.version}", "ref": f"{result.name}@{result.version}",
            "files": result.files, "bytes": result.bytes}


def cleanup(info: RunInfo, results: dict[str, Any], run_id: str, settings: PlatformSettings,
            clock: Clock = utc_now) -> dict[str, Any]:
    """Record each stage's own seconds (from its ``results``, None for a stage that did not finish);
    remove the run's workspace once published, keep it after a failure (for debugging and resume)
    and take the run out of the planner's queue (closed at ``clock()``)."""
    ledger = open_ledger(settings.ledger_url)
    for stage, result in results.items():
        if isinstance(result, dict) and "seconds" in result:
            ledger.record_stage(run_id, stage, result["seconds"])
    if results.get("publish") is None:
        ledger.close_run(run_id, "failed", clock())
        return {"kept_workspace": info.workspace}
    shutil.rmtree(info.workspace, ignore_errors=True)
    return {"removed_workspace": info.workspace}
