"""The cost no policy can beat: every job-second paid once, at the cheapest price its deadline allows.

No idle GPU, no node start-up, no redone work. A standard or batch job may run anywhere
between its submission and its deadline, so its seconds are paid off-peak as far as the
off-peak time in that span covers them (a job without a deadline can always wait for the
night); an interactive job is due at once, so it pays the prices of the span it would run
in if it started on arrival. Splitting a job across windows is allowed: a bound, not a plan.

That bound lets a standard job wait half a day for the night, which no policy keeping standard waits
short may do. ``service_level_bound`` is the least a policy can pay that starts 95% of standard jobs
within ``standard_p95`` of their submission: each standard job pays the cheapest prices of the span
it could run in starting that soon, but for the 5% whose waiting for their deadline would save the most.
"""

from __future__ import annotations

import math
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


def prompt_lower_bound(job: TraceJob, calendar: OffPeakCalendar, start_within: timedelta) -> float:
    """USD: the least a job can pay when it must start within ``start_within`` of its submission (and by
    its deadline): off-peak as far as the off-peak time in the span it can then run in covers it."""
    seconds, price = job.actual_seconds, calendar.price(job.gpu_type)
    latest_end = job.submitted_at + start_within + timedelta(seconds=seconds)
    if job.deadline is not None:
        latest_end = min(latest_end, max(job.deadline, job.submitted_at + timedelta(seconds=seconds)))
    cheap = min(seconds, calendar.off_peak_seconds(job.submitted_at, latest_end))
    return (cheap * price.off_peak + (seconds - cheap) * price.peak) / 3600


def service_level_bound(jobs: list[TraceJob], calendar: OffPeakCalendar,
                        standard_p95: timedelta = timedelta(minutes=30)) -> float:
    """USD: the least any policy can pay whose standard jobs wait at most ``standard_p95`` at the 95th
    percentile (see the module's docstring); never less than ``cost_lower_bound``."""
    standard = [job for job in jobs if job.priority == "standard"]
    others = sum(job_lower_bound(job, calendar) for job in jobs if job.priority != "standard")
    prompt = [prompt_lower_bound(job, calendar, standard_p95) for job in standard]
    savings = sorted((p - job_lower_bound(job, calendar) for job, p in zip(standard, prompt, strict=True)),
                     reverse=True)
    may_wait = math.ceil(0.05 * len(standard))  # rounded up: the bound may only err low
    return others + sum(prompt) - sum(savings[:may_wait])
