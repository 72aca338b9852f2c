"""A platform in motion, written into a ledger, a workspace and an artifact store: what the platform
page's tests (in-process and in a real browser) look for. Run ids are fresh on every call, so a scene
can share a ledger with real runs."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from lora_tasks.ledger.models import CapacityDecision
from lora_tasks.ledger.store import Ledger
from lora_tasks.pipeline.workspace import run_key, train_output
from lora_tasks.scheduling.windows import load_calendar
from lora_tasks.stores import open_store
from lora_tasks.train.outputs import METRICS_FILE


@dataclass
class Scene:
    tenants: tuple[str, str]
    queued: list[str] = field(default_factory=list)
    running: str = ""
    finished: list[str] = field(default_factory=list)
    adapter: str = ""
    """tenant/name@version of the published adapter."""

    def close(self, ledger: Ledger, now: datetime) -> None:
        """End the scene's open runs, so that nothing planned from the ledger later waits for them."""
        for run_id in [*self.queued, self.running]:
            ledger.close_run(run_id, "cancelled", now)


def build_scene(ledger: Ledger, workspace: Path, artifact_root: str, now: datetime) -> Scene:
    tag = uuid.uuid4().hex[:6]
    scene = Scene((f"initech-{tag}", f"globex-{tag}"))
    initech, globex = scene.tenants

    def run(tenant: str, job: str, priority: str, gpu_type: str, submitted: datetime) -> str:
        run_id = f"scene-{job}-{tag}"
        ledger.register_run(run_id, tenant=tenant, job=job, priority=priority, gpu_type=gpu_type,
                            submitted_at=submitted)
        return run_id

    for job, tenant, priority, gpu in (("q1", initech, "standard", "l4"), ("q2", initech, "standard", "l4"),
                                       ("q3", globex, "interactive", "l4"), ("q4", globex, "batch", "a100")):
        scene.queued.append(run(tenant, job, priority, gpu, now - timedelta(minutes=5)))

    started = now - timedelta(minutes=20)
    scene.running = run(initech, "training", "standard", "l4", started - timedelta(minutes=1))
    ledger.record_prediction(scene.running, seconds=3600, low=3000, high=4200, peak_bytes=None,
                             features={"steps": 10})
    ledger.attempt_started(scene.running, 1, started)
    metrics = train_output(workspace / initech / run_key(scene.running, started - timedelta(minutes=1))) / METRICS_FILE
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text("".join(json.dumps({"step": s, "loss": 0.5 - 0.05 * s}) + "\n" for s in (1, 2, 3)))

    calendar = load_calendar()
    for job, tenant, hours in (("done-a", initech, 1.5), ("done-b", globex, 0.5)):
        ended = now - timedelta(minutes=1)  # this month's bill, unless run in a month's first minute
        begun = ended - timedelta(hours=hours)
        run_id = run(tenant, job, "standard", "l4", begun)
        ledger.attempt_started(run_id, 1, begun)
        ledger.attempt_finished(run_id, 1, started_at=begun, finished_at=ended,
                                succeeded=True, peak_bytes=None, calendar=calendar)
        scene.finished.append(run_id)

    for hours_ago, current, desired in ((12, 1, 2), (6, 2, 3), (1, 3, 3)):
        ledger.record_decision(CapacityDecision(decided_at=now - timedelta(hours=hours_ago), gpu_type="l4",
                                                current=current, desired=desired, applied=desired,
                                                reason="scene", inputs={}))

    version = ledger.reserve_adapter_version(globex, "dogs", scene.finished[1], base_model="tiny-sd",
                                             formats=["diffusers"], created_at=now - timedelta(minutes=30))
    grid = io.BytesIO()
    Image.new("RGB", (96, 48), (200, 40, 40)).save(grid, format="PNG")
    store = open_store(artifact_root)
    store.write(f"tenants/{globex}/loras/dogs/v{version}/sample_grid.png", grid.getvalue())
    ledger.mark_adapter_published(globex, "dogs", version, uri=store.uri_of(f"tenants/{globex}/loras/dogs/v{version}"),
                                  figures={"steps": 10}, public=False, published_at=now)  # the newest: on the page
    scene.adapter = f"{globex}/dogs@{version}"
    return scene
