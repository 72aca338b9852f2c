"""How a stage's failure reads in the task log, and whether Airflow retries it.

A ``LoraTaskError`` says the input needs fixing: retrying cannot help, and a person reads its
message once, at the end of the log, as one line without a traceback (Airflow logs a traceback
for every exception except ``SystemExit``). Everything else (a lost connection, a killed worker)
keeps Airflow's retries and traceback. Libraries' progress bars and warnings would otherwise
reach the log through stderr, which Airflow records at error level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from lora_tasks.errors import LoraTaskError

QUIET_LIBRARIES = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
                   "DIFFUSERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
"""Progress bars off and library chatter at their error level, for this process and the trainer it starts."""


class InputNeedsFixing(SystemExit):
    """A stage's refusal of its input. Airflow logs a ``SystemExit`` as one line ("Task exited") with its
    code, which is the reason; ``NO_RETRY_FOR_INPUT_ERRORS`` fails the task at once."""


NO_RETRY_FOR_INPUT_ERRORS = ExceptionRetryPolicy(rules=[
    RetryRule(exception=InputNeedsFixing, action=RetryAction.FAIL, reason="the input needs fixing: no retry"),
])
"""Every stage's retry policy: an input error fails the task; anything else retries as configured."""


@contextmanager
def stage_errors() -> Iterator[None]:
    """Run a stage: quiet libraries, and turn a LoraTaskError into a one-line, final, unretried failure."""
    os.environ.update(QUIET_LIBRARIES)
    logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger, at warning level
    try:
        yield
    except LoraTaskError as exc:
        raise InputNeedsFixing(str(exc)) from None
