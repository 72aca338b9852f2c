"""A stage's refusal reads as one line and is not retried; anything else keeps Airflow's retries."""

from __future__ import annotations

import os

import pytest

from lora_airflow.errors import NO_RETRY_FOR_INPUT_ERRORS, QUIET_LIBRARIES, InputNeedsFixing, stage_errors
from lora_tasks.errors import DatasetError


@pytest.fixture(autouse=True)
def restored_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in QUIET_LIBRARIES:  # stage_errors sets them for the task's process; restore them after
        monkeypatch.setenv(name, os.environ.get(name, ""))


def test_an_input_error_becomes_a_one_line_exit_that_is_not_retried() -> None:
    with pytest.raises(InputNeedsFixing) as raised, stage_errors():
        raise DatasetError("dataset.uri 'x' does not exist. Fix: upload it first")
    assert raised.value.code == "dataset.uri 'x' does not exist. Fix: upload it first"  # what the log line shows
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert NO_RETRY_FOR_INPUT_ERRORS.evaluate(raised.value, try_number=1, max_tries=3).action.value == "fail"


def test_other_failures_keep_their_retries_and_progress_bars_are_off() -> None:
    with pytest.raises(ConnectionError) as raised, stage_errors():
        raise ConnectionError("object store went away")
    assert NO_RETRY_FOR_INPUT_ERRORS.evaluate(raised.value, try_number=1, max_tries=3).action.value == "default"
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
