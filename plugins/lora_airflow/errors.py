"""Map the library's errors onto Airflow's retry semantics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from lora_tasks.errors import LoraTaskError


@contextmanager
def user_errors_fail_fast() -> Iterator[None]:
    """A LoraTaskError says the input needs fixing: fail now, with its message, instead of retrying."""
    try:
        yield
    except LoraTaskError as exc:
        raise AirflowFailException(str(exc)) from exc
