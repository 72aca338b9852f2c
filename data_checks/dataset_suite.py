"""The dataset suites, written as code, and the one function that runs them.

Two batches are validated: the kept samples (enough of them, captioned, large enough) and
every sample of the upload (not mostly duplicates, not mostly rejected). Great
Expectations' ``mostly`` ignores missing values, so text columns are filled with '' first. A
caption made from the file name (the caption stage's last resort) does not count as one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

DUPLICATE_REASONS = ["exact_duplicate", "near_duplicate"]


class Thresholds(Protocol):
    """What the suites compare against: a job spec's ``dataset.checks`` is one."""

    min_images: int
    min_caption_coverage: float
    min_side: int
    max_duplicate_share: float
    max_rejected_share: float


class Sample(Protocol):
    """What the suites read of a manifest row: ``lora_tasks.intake.manifest.ManifestRow`` is one."""

    path: str
    role: str
    reason: str | None
    caption: str | None
    caption_source: str | None

    @property
    def min_side(self) -> int | None: ...


@dataclass(frozen=True)
class Finding:
    expectation: str
    passed: bool
    sentence: str
    observed: Any


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the user should know that no expectation judges (captions that fell back, converted images)."""

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.findings)

    def text(self) -> str:
        failed = [f for f in self.findings if not f.passed]
        if not failed:
            lines = [f"dataset checks passed ({len(self.findings)} expectations)"]
        else:
            lines = [f"dataset checks failed: {len(failed)} of {len(self.findings)} expectations"]
            lines += [f"  - {f.sentence}" for f in failed]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "findings": [f.__dict__ for f in self.findings], "notes": self.notes}


def _suites(checks: Thresholds, task: str) -> dict[str, list[Any]]:
    import great_expectations.expectations as gxe

    kept = [gxe.ExpectTableRowCountToBeBetween(min_value=checks.min_images, meta={"what": "kept samples"})]
    if task == "image":  # a text record is its own content: it has no caption to cover
        kept.append(gxe.ExpectColumnValueLengthsToBeBetween(column="caption", min_value=1,
                                                            mostly=checks.min_caption_coverage,
                                                            meta={"what": "caption coverage"}))
        kept.append(gxe.ExpectColumnValuesToBeBetween(column="min_side", min_value=checks.min_side,
                                                      meta={"what": "minimum resolution"}))
    upload = [
        gxe.ExpectColumnValuesToNotBeInSet(column="reason", value_set=DUPLICATE_REASONS,
                                           mostly=1 - checks.max_duplicate_share, meta={"what": "duplicate share"}),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["kept"], mostly=1 - checks.max_rejected_share,
                                        meta={"what": "rejected share"}),
    ]
    return {"kept": kept, "upload": upload}


def _frames(kept: Sequence[Sample], rejected: Sequence[Sample]) -> dict[str, Any]:
    import pandas as pd

    kept_frame = pd.DataFrame({
        "path": [r.path for r in kept],
        "caption": [r.caption or "" if r.caption_source != "filename" else "" for r in kept],  # names don't count
        "min_side": [r.min_side or 0 for r in kept],
    }, columns=["path", "caption", "min_side"])
    samples = [r for r in rejected if r.role == "sample"]
    upload = pd.DataFrame({
        "status": ["kept"] * len(kept) + ["rejected"] * len(samples),
        "reason": ["kept"] * len(kept) + [str(r.reason) for r in samples],
    }, columns=["status", "reason"])
    return {"kept": kept_frame, "upload": upload}


def _sentence(what: str, kwargs: dict[str, Any], result: dict[str, Any], passed: bool) -> tuple[str, Any]:
    verdict = "ok" if passed else "FAILED"
    if what == "kept samples":
        observed = result.get("observed_value")
        return f"{what}: {observed} kept, at least {kwargs['min_value']} needed ({verdict})", observed
    total, bad = result.get("element_count", 0), result.get("unexpected_count", 0)
    share = bad / total if total else 0.0
    if what == "caption coverage":
        return (f"{what}: {1 - share:.0%} of kept samples have a caption of their own ({bad} of {total} have none "
                f"or only words from the file name), at least {kwargs['mostly']:.0%} needed ({verdict})"), \
            round(1 - share, 4)
    if what == "minimum resolution":
        examples = ", ".join(str(v) for v in result.get("partial_unexpected_list", [])[:5])
        return (f"{what}: {bad} of {total} kept images have a short side under {int(kwargs['min_value'])} px"
                f"{f' (e.g. {examples})' if examples else ''} ({verdict})"), bad
    limit = 1 - kwargs["mostly"]
    return (f"{what}: {share:.0%} of the upload's {total} samples ({bad}), at most {limit:.0%} allowed "
            f"({verdict})"), round(share, 4)


def run_checks(kept: Sequence[Sample], rejected: Sequence[Sample], checks: Thresholds,
               task: str = "image") -> CheckReport:
    """Validate kept and rejected samples against the job's thresholds."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")  # in memory: no gx/ folder, no data docs
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("manifest")
    frames = _frames(kept, rejected)
    report = CheckReport()
    for name, expectations in _suites(checks, task).items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all").get_batch(
            batch_parameters={"dataframe": frames[name]})
        outcome = batch.validate(gx.ExpectationSuite(name=f"dataset_{name}", expectations=expectations),
                                 result_format="SUMMARY")
        for result in outcome.results:
            config = result.expectation_config
            what = config.meta["what"]
            sentence, observed = _sentence(what, config.kwargs, result.result, bool(result.success))
            report.findings.append(Finding(config.type, bool(result.success), sentence, observed))
    return report
