"""How every ``python -m lora_tasks...`` command starts and fails.

Argument parsing stays with each command. This sets up logging once and turns a LoraTaskError
(the input needs fixing; its message says how) into ``error: <message>`` on stderr and the exit
status INPUT_ERROR_EXIT, which the runners read as "retrying cannot help". Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

from lora_tasks.errors import INPUT_ERROR_EXIT, LoraTaskError

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
Main = Callable[[list[str] | None], int]


def entry_point(main: Main) -> Main:
    """Wrap a command's ``main(argv) -> exit status``."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        try:
            return main(argv)
        except LoraTaskError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return INPUT_ERROR_EXIT

    return run
