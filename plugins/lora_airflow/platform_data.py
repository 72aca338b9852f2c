"""What the operators' platform page shows, read from the ledger, the workspace and the artifact store:
the queue by priority and GPU type, GPUs provisioned against planned over the last day (the capacity
planner's stored decisions), running jobs and their progress, each tenant's GPU hours and cost this month,
and recently published adapters with their sample grids. Charts are PNGs drawn by matplotlib (its Agg
``Figure``, never pyplot), sent inline as data URIs so the page is one request."""

from __future__ import annotations

import base64
import io
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lora_tasks.errors import StoreError
from lora_tasks.ledger.adapters import AdapterVersion
from lora_tasks.ledger.models import CapacityDecision, Run
from lora_tasks.ledger.store import Ledger, TenantUsage
from lora_tasks.pipeline.workspace import run_key, train_output
from lora_tasks.settings import PlatformSettings
from lora_tasks.stores import open_store
from lora_tasks.stores.versions import GRID_FILE, LOSS_CURVE_FILE, published_file
from lora_tasks.tenants.progress import predicted_finish, training_progress
from lora_tasks.train.loss_curve import plot_loss_curve
from lora_tasks.train.outputs import METRICS_FILE

PRIORITIES = ("interactive", "standard", "batch")
RECENT_ADAPTERS = 6


@dataclass(frozen=True)
class QueueRow:
    priority: str
    gpu_type: str
    queued: int
    running: int


@dataclass(frozen=True)
class RunningJob:
    run: Run
    progress: dict[str, Any] | None
    predicted_finish: datetime | None


@dataclass(frozen=True)
class RecentAdapter:
    version: AdapterVersion
    grid: str | None
    """The sample grid as a data URI; None for a text adapter, or one published without samples."""


@dataclass(frozen=True)
class PlatformSnapshot:
    now: datetime
    month: str
    queue: list[QueueRow]
    running: list[RunningJob]
    usage: dict[str, TenantUsage]
    adapters: list[RecentAdapter]
    capacity_chart: str | None
    """GPUs provisioned and planned per GPU type over the last day (a data URI); None without decisions."""
    usage_chart: str | None
    decisions: int = 0
    totals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunView:
    run: Run
    stages: dict[str, float]
    adapter: AdapterVersion | None
    progress: dict[str, Any] | None
    loss_curve: str | None
    grid: str | None


def platform_snapshot(ledger: Ledger, settings: PlatformSettings, now: datetime) -> PlatformSnapshot:
    month = now.strftime("%Y-%m")
    queued = ledger.runs(statuses=("submitted",))
    running = ledger.runs(statuses=("running",))
    usage = ledger.month_usage(month)
    decisions = ledger.decisions(since=now - timedelta(days=1))
    published = {v.run_id: v for v in ledger.adapter_versions()}
    recent = sorted(published.values(), key=lambda v: v.published_at or now, reverse=True)[:RECENT_ADAPTERS]
    store = open_store(settings.artifact_root, settings.s3_endpoint_url)
    return PlatformSnapshot(
        now=now, month=month, queue=queue_rows(queued, running),
        running=[RunningJob(r, training_progress(settings.workspace, r, None), predicted_finish(r))
                 for r in running],
        usage=usage,
        adapters=[RecentAdapter(v, _published_png(store, v, GRID_FILE)) for v in recent],
        capacity_chart=capacity_chart(decisions, now), usage_chart=usage_chart(usage, month),
        decisions=len(decisions),
        totals={"gpu_hours": sum(u.gpu_hours for u in usage.values()), "cost": sum(u.cost for u in usage.values()),
                "runs": sum(u.runs for u in usage.values())})


def run_view(ledger: Ledger, settings: PlatformSettings, run_id: str) -> RunView | None:
    """One run's page: its loss curve (from its metrics log while the workspace has it, else the published
    one) and its sample grid (the evaluate stage's, else the published one); None for a run not in the ledger."""
    run = ledger.find_run(run_id)
    if run is None:
        return None
    adapter = next((v for v in ledger.adapter_versions(tenant=run.tenant) if v.run_id == run_id), None)
    workspace = settings.workspace / run.tenant / run_key(run.run_id, run.submitted_at)
    store = open_store(settings.artifact_root, settings.s3_endpoint_url)
    curve = _drawn_loss_curve(train_output(workspace) / METRICS_FILE)
    grid = _png_file(workspace / "evaluate" / GRID_FILE)
    if adapter is not None:
        curve = curve or _published_png(store, adapter, LOSS_CURVE_FILE)
        grid = grid or _published_png(store, adapter, GRID_FILE)
    return RunView(run, ledger.stage_seconds(run_id), adapter,
                   training_progress(settings.workspace, run, adapter.figures if adapter else None), curve, grid)


def queue_rows(queued: list[Run], running: list[Run]) -> list[QueueRow]:
    """Queued and running jobs per (priority, GPU type), priorities in the order they are served."""
    waiting = Counter((r.priority, r.gpu_type) for r in queued)
    busy = Counter((r.priority, r.gpu_type) for r in running)
    keys = sorted(set(waiting) | set(busy), key=lambda k: (_rank(k[0]), k[1]))
    return [QueueRow(priority, gpu, waiting[(priority, gpu)], busy[(priority, gpu)]) for priority, gpu in keys]


def capacity_chart(decisions: list[CapacityDecision], now: datetime) -> str | None:
    """Per GPU type, the nodes provisioned when the planner looked and the nodes it planned, as steps."""
    if not decisions:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 3.2), dpi=100)
    axes = figure.subplots()
    for gpu_type in sorted({d.gpu_type for d in decisions}):
        rows = [d for d in decisions if d.gpu_type == gpu_type]
        times = [d.decided_at for d in rows] + [now]
        line = axes.step(times, [d.current for d in rows] + [rows[-1].current], where="post",
                         label=f"{gpu_type} provisioned")
        axes.step(times, [d.desired for d in rows] + [rows[-1].desired], where="post", linestyle="--",
                  color=line[0].get_color(), label=f"{gpu_type} planned")
    axes.set(xlim=(now - timedelta(days=1), now), ylabel="nodes", title="GPUs provisioned vs planned, last 24 h")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    return _data_uri(figure)


def usage_chart(usage: dict[str, TenantUsage], month: str) -> str | None:
    if not usage:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 0.6 + 0.45 * len(usage)), dpi=100)
    axes = figure.subplots()
    tenants = sorted(usage)
    axes.barh(tenants, [usage[t].gpu_hours for t in tenants], color="tab:blue")
    for index, tenant in enumerate(tenants):
        axes.annotate(f"{usage[tenant].gpu_hours:.2f} h, {usage[tenant].cost:.2f}", (usage[tenant].gpu_hours, index),
                      xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    axes.set(xlabel="GPU hours", title=f"GPU hours per tenant, {month}")
    axes.margins(x=0.25)
    figure.tight_layout()
    return _data_uri(figure)


def _drawn_loss_curve(metrics: Path) -> str | None:
    with tempfile.TemporaryDirectory(prefix="lora-curve-") as folder:
        out = Path(folder) / LOSS_CURVE_FILE
        return _png_file(out) if plot_loss_curve(metrics, out)["file"] else None


def _published_png(store: Any, version: AdapterVersion, file: str) -> str | None:
    try:
        return _png_uri(store.read(published_file(version.tenant, version.name, version.version, file)))
    except StoreError:
        return None


def _png_file(path: Path) -> str | None:
    try:
        return _png_uri(path.read_bytes())
    except OSError:
        return None


def _data_uri(figure: Any) -> str:
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return _png_uri(out.getvalue())


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)
