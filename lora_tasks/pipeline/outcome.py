"""A run's verdict from its stages' states: success only when every stage succeeded.

Airflow derives a run's state from its leaf tasks, ignoring teardowns; a stage someone marks
failed or skipped from outside can then leave a run that published nothing looking
successful. The last task judges the states instead, and names the first stage to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lora_tasks.errors import LoraTaskError


def judge_run(states: Mapping[str, str | None], stages: Sequence[str]) -> dict[str, str]:
    """``{"state": "success"}`` when each of ``stages`` succeeded; otherwise a LoraTaskError naming them."""
    unsuccessful = [(stage, states.get(stage) or "not run") for stage in stages if states.get(stage) != "success"]
    if not unsuccessful:
        return {"state": "success"}
    first = next((s for s, state in unsuccessful if state not in {"upstream_failed", "not run"}), unsuccessful[0][0])
    listed = ", ".join(f"{stage} {state}" for stage, state in unsuccessful)
    raise LoraTaskError(f"the run published nothing: {listed}. Fix: read the log of {first}, the first stage that "
                        "did not succeed")
