"""The cost no policy can beat: every job-second paid once, at the cheapest price its deadline allows.

No idle GPU, no node start-up, no redone work. A standard or batch job may run anywhere
between its submission and its deadline, so its seconds are paid off-peak as far as the
off-peak time in that span covers them (a job without a deadline can always wait for the
night); an interactive job is due at once, so it pays the prices of the span it would run
in if it started on arrival. Splitting a job across windows is allowed: a bound, not a plan.
"""

from __future__ import annotations

from datetime import timedelta

from lora_tasks.scheduling.simulate.trace import TraceJob
from lora_tasks.scheduling.windows import OffPeakCalendar


def job_lower_bound(job: TraceJob, calendar: OffPeakCalendar) -> float:
    """USD: the least any schedule can pay for this job's actual seconds."""
    seconds = job.actual_seconds
    if job.priority == "interactive":
        return calendar.cost(job.gpu_type, job.submitted_at, job.submitted_at + timedelta(seconds=seconds))
    price = calendar.price(job.gpu_type)
    if job.deadline is None:
        return seconds * price.off_peak / 3600
    off_peak = calendar.off_peak_seconds(job.submitted_at, max(job.submitted_at, job.deadline))
    cheap = min(seconds, off_peak)
    return (cheap * price.off_peak + (seconds - cheap) * price.peak) / 3600


def cost_lower_bound(jobs: list[TraceJob], calendar: OffPeakCalendar) -> float:
    return sum(job_lower_bound(job, calendar) for job in jobs)
