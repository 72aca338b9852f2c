"""The stages as plain functions: what a person reads when one refuses the data, and the run's verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tasks.errors import DatasetError, LoraTaskError
from lora_tasks.pipeline import stages
from lora_tasks.pipeline.outcome import judge_run
from lora_tasks.pipeline.workspace import RunInfo
from lora_tasks.settings import platform_settings
from tests.lora_tasks.pipeline.test_validate import job, validate


def test_a_failed_check_names_the_filters_top_reasons(tiny_model: Path, style_dataset: Path) -> None:
    """The images are 64-128 px and the filter's default minimum is 256: nothing is kept, and the message
    says why without sending the reader to another task's result."""
    spec = job(tiny_model, style_dataset, job__name="all-too-small")
    spec["dataset"].pop("filter")
    info = RunInfo.of(validate({"job_spec": spec}))
    scanned = stages.scan(info)
    filtered = stages.filter_content(info, scanned["manifest"])
    captioned = stages.caption(info, filtered["kept"])
    with pytest.raises(DatasetError) as refused:
        stages.check_dataset(info, captioned["captioned"], filtered["rejected"], "manual__1", platform_settings())
    message = str(refused.value)
    assert "the filter rejected 12 file(s); top reasons:" in message
    assert "too_small: 12 (e.g. 3_sks/teal_circle_on_sunset_00.png: " in message
    assert "its short side is under 256 px" in message


@pytest.mark.parametrize(
    ("states", "message"),
    [
        ({"train": "failed", "evaluate": "upstream_failed", "publish": "upstream_failed"},
         "train failed, evaluate upstream_failed, publish upstream_failed. Fix: read the log of train"),
        ({"train": "success", "evaluate": "success", "publish": "skipped"}, "publish skipped"),
        ({"train": "success", "evaluate": "success"}, "publish not run"),
    ],
)
def test_the_verdict_fails_unless_every_stage_succeeded(states: dict, message: str) -> None:
    order = ("train", "evaluate", "publish")
    with pytest.raises(LoraTaskError, match=message):
        judge_run(states, order)
    assert judge_run(dict.fromkeys(order, "success"), order) == {"state": "success"}
