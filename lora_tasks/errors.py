"""One exception family for everything a user can fix.

Every message names the thing that is wrong (a file, a key, a value) and the fix, so
that a failed Airflow task or CLI run tells its reader what to do next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

INPUT_ERROR_EXIT = 2
"""What the CLIs exit with on a LoraTaskError: the input needs fixing, and a retry cannot help
(the runners read it from the trainer)."""


class LoraTaskError(Exception):
    """A problem with the user's input or environment, with an actionable message."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job spec: where, what, and how to fix it."""

    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}. Fix: {self.fix}"


class JobSpecError(LoraTaskError):
    """The job spec is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], source: str = "job spec") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source} has {count}:\n{lines}")


class ProblemCollector:
    """Runs independent checks of one spec and reports what they all found at once: a user who fixes the base
    model should not have to run again to hear that the dataset is missing too.

    ``raise_found`` raises a lone error as its own type (which tells a caller what failed), its message led by
    ``source`` (the spec's file), and otherwise one JobSpecError of ``source`` listing every problem, each under
    its key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[tuple[str, LoraTaskError]] = []

    def check(self, key: str, run: Callable[[], T]) -> T | None:
        """``run()``'s result, or None after noting its error under ``key`` (the spec key it checks)."""
        try:
            return run()
        except LoraTaskError as exc:
            self.errors.append((key, exc))
            return None

    def raise_found(self) -> None:
        if len(self.errors) == 1 and not isinstance(self.errors[0][1], JobSpecError):
            error = self.errors[0][1]
            raise type(error)(f"{self.source}: {error}") from error
        problems = [problem for key, exc in self.errors for problem in _problems_of(key, exc)]
        if problems:
            raise JobSpecError(problems, self.source)


def _problems_of(key: str, exc: LoraTaskError) -> list[Problem]:
    if isinstance(exc, JobSpecError):
        return exc.problems
    message, _, fix = str(exc).partition(" Fix: ")
    return [Problem(key, message.removeprefix(f"{key}: ").rstrip("."), fix.rstrip(".") or "see the README")]


class StoreError(LoraTaskError):
    """A store cannot be reached, listed or read as asked."""


class DatasetError(LoraTaskError):
    """The dataset cannot be used for training as it is."""


class ModelLoadError(LoraTaskError):
    """The base model cannot be found or loaded."""


class UnsafeFileError(LoraTaskError):
    """A file would be loaded in a way that can run code (a pickle)."""


class ResumeError(LoraTaskError):
    """A checkpoint exists but cannot be resumed with this job and dataset."""
