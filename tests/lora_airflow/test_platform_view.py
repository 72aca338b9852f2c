"""The operators' platform page and per-run page, rendered from a ledger on SQLite and PostgreSQL: the
queue by priority and GPU type, GPUs provisioned vs planned, running jobs with their step and loss, each
tenant's GPU hours and cost (as its bill counts them), recent adapters with their grids."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lora_airflow.platform_data import QueueRow, platform_snapshot, run_view
from lora_airflow.platform_view import Pages
from lora_tasks.ledger import Ledger
from lora_tasks.settings import PlatformSettings
from tests.lora_airflow.platform_scene import build_scene
from tests.lora_tasks.ledger.conftest import ledger  # noqa: F401 - a fixture, used by name

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(ledger: Ledger, tmp_path: Path) -> PlatformSettings:  # noqa: F811 - the fixture above
    return PlatformSettings(ledger_url=ledger.url, workspace=tmp_path / "workspace",
                            artifact_root=str(tmp_path / "artifacts"))


def png(data_uri: str | None) -> bytes:
    assert data_uri is not None and data_uri.startswith("data:image/png;base64,")
    data = base64.b64decode(data_uri.split(",", 1)[1])
    assert data.startswith(b"\x89PNG")
    return data


def test_the_snapshot_counts_what_the_ledger_holds(ledger: Ledger, settings: PlatformSettings) -> None:  # noqa: F811
    scene = build_scene(ledger, settings.workspace, settings.artifact_root, NOW)
    initech, globex = scene.tenants
    snapshot = platform_snapshot(ledger, settings, NOW)
    assert snapshot.queue == [QueueRow("interactive", "l4", 1, 0), QueueRow("standard", "l4", 2, 1),
                              QueueRow("batch", "a100", 1, 0)]
    [running] = snapshot.running
    assert running.run.run_id == scene.running and running.progress == {"step": 3, "of": 10, "loss": 0.35}
    assert {t: round(u.gpu_hours, 6) for t, u in snapshot.usage.items()} == {initech: 1.5, globex: 0.5}
    assert {t: u.cost for t, u in snapshot.usage.items()} == {
        t: sum(line.cost for line in ledger.bill(t, "2026-11")) for t in (initech, globex)}
    assert snapshot.decisions == 3 and png(snapshot.capacity_chart) and png(snapshot.usage_chart)
    [adapter] = snapshot.adapters
    assert f"{adapter.version.tenant}/{adapter.version.ref}" == scene.adapter and png(adapter.grid)


def test_an_empty_platform_says_so(settings: PlatformSettings) -> None:
    page = Pages(settings).platform(NOW)
    for words in ("No job is queued or running", "has decided nothing", "Nothing is training",
                  "No job has finished in 2026-11", "No adapter is published yet"):
        assert words in page


def test_the_page_shows_each_table_with_the_ledgers_numbers(ledger: Ledger,  # noqa: F811
                                                            settings: PlatformSettings) -> None:
    scene = build_scene(ledger, settings.workspace, settings.artifact_root, NOW)
    initech, _ = scene.tenants
    page = Pages(settings).platform(NOW)
    assert re.search(r"<td>standard</td><td>l4</td>\s*<td class=\"num\">2</td><td class=\"num\">1</td>", page)
    assert f'data-run-id="{scene.running}"' in page and "3 of 10" in page and "0.3500" in page
    usage = ledger.month_usage("2026-11")[initech]
    assert f'<td class="num">{usage.gpu_hours:.4f}</td><td class="num">{usage.cost:.4f}</td>' in page
    assert f'data-ref="{scene.adapter.split("@")[0]}@' in page
    assert page.count("data:image/png;base64,") == 3  # capacity, usage, the adapter's grid


def test_a_runs_page_draws_its_loss_curve_and_shows_its_grid(ledger: Ledger,  # noqa: F811
                                                             settings: PlatformSettings) -> None:
    scene = build_scene(ledger, settings.workspace, settings.artifact_root, NOW)
    view = run_view(ledger, settings, scene.running)
    assert view is not None and png(view.loss_curve) and view.grid is None
    published = run_view(ledger, settings, scene.finished[1])
    assert published is not None and published.adapter is not None and png(published.grid)
    assert run_view(ledger, settings, "no-such-run") is None
    page = Pages(settings).run(scene.running)
    assert page is not None and 'id="loss-curve"' in page and "step 3 of 10, loss 0.3500" in page


def test_tenant_names_are_escaped(ledger: Ledger, settings: PlatformSettings) -> None:  # noqa: F811
    ledger.register_run("r1", tenant="<script>x</script>", job="j", priority="standard", gpu_type="l4",
                        submitted_at=NOW)
    ledger.attempt_started("r1", 1, NOW)
    page = Pages(settings).platform(NOW)
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def test_a_run_id_from_the_link_is_escaped(settings: PlatformSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run tab's link carries the run id as text anyone can write; it never becomes markup. (Airflow's
    login is left out here: tests/e2e/test_platform.py drives the page behind it.)"""
    from fastapi.testclient import TestClient

    from lora_airflow import platform_view

    monkeypatch.setattr(platform_view, "may_read_runs", lambda: lambda: None)
    client = TestClient(platform_view.create_platform_app(settings))
    answer = client.get("/runs", params={"run_id": "<img src=x onerror=alert(document.cookie)>"})
    assert answer.status_code == 404 and "<img" not in answer.text and "&lt;img src=x" in answer.text
