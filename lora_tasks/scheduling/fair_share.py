"""Fair sharing between tenants when a GPU type's capacity is short: start-time fair queueing.

The rule: priority classes first (interactive, standard, batch), and within a class the queued job with
the smallest *start tag* runs next (ties: the earlier submission). A job's tag is the later of the class's
virtual time (the tag of the job that started last) and the end tag of its tenant's previous job in the
class, where an end tag is the start tag plus the job's predicted GPU-seconds. So a tenant who submits
fifty jobs at once gets tags 0, 1 h, 2 h, ... and another tenant's first job, submitted an hour later, is
tagged with the virtual time and starts before the first tenant's second hour of work: each tenant with
work waiting gets an equal share of the GPU time that frees, and none can hold the queue by submitting
more. A tenant idle for a while starts at the virtual time, not at its old tags: no credit is hoarded.

One instance per GPU type: the simulator keeps it as jobs arrive and start; admission rebuilds it from the
ledger's open runs, in submission order, to predict where a new run will be served.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class FairShare:
    virtual: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Per priority class: the start tag of the job that started last."""
    last_end: dict[tuple[str, str], float] = field(default_factory=dict)
    """Per (priority class, tenant): the end tag of the tenant's latest job in the class."""

    def peek(self, priority: str, tenant: str) -> float:
        """The start tag a job of ``tenant`` would get now (admission asks before the job is queued)."""
        return max(self.virtual[priority], self.last_end.get((priority, tenant), 0.0))

    def tag(self, priority: str, tenant: str, predicted_seconds: float) -> float:
        """The start tag of a job entering the queue; the tenant's next job is tagged after it."""
        start = self.peek(priority, tenant)
        self.last_end[(priority, tenant)] = start + predicted_seconds
        return start

    def started(self, priority: str, tag: float) -> None:
        """A job of the class started: virtual time moves to its tag (never back)."""
        self.virtual[priority] = max(self.virtual[priority], tag)
