"""Many tenants at once through the tenant API, and what operators see of them in Airflow's UI.

Twenty jobs over five tenants are submitted at the same moment (half with their dataset uploaded, half
naming it under their prefix), on the real stack with its ledger on PostgreSQL: every one is taken,
trains its own tenant's data, publishes under its own tenant and is billed to it. Then an operator logs
in to the Airflow UI in Debian's chromium and reads the platform page and a run's page; what they show
is checked against the ledger, and screenshots go to build/screenshots/ for the README."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from airflow_client.client import DagRunApi, PoolApi, PoolPatchBody

from lora_airflow.local_stack import LOGINS, AirflowConfig
from lora_airflow.platform_data import queue_rows
from lora_airflow.rest_client import wait_for_run
from lora_tasks.ledger.store import Ledger, open_ledger
from lora_tasks.stores import open_store
from lora_tasks.tiny.sample_data import make_style_dataset
from tests.conftest import CROWD, REPO, UPLOADS
from tests.e2e.helpers import DAG, client, conf, log_text, states
from tests.lora_airflow.platform_scene import build_scene

pytestmark = pytest.mark.slow
TENANTS = ("demo", *CROWD)
JOBS_EACH = 4
SCREENSHOTS = REPO / "build" / "screenshots"


@dataclass(frozen=True)
class Crowd:
    ledger: Ledger
    jobs: dict[str, str]
    """run id -> tenant"""
    datasets: dict[str, Path]
    """'<tenant>/image' and '<tenant>/text' -> the folder under the tenant's prefix"""
    uploaded: set[str]
    """run ids whose dataset came with the request"""


def archive_of(folder: Path) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for file in sorted(f for f in folder.rglob("*") if f.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())
    return packed.getvalue()


def is_image(tenant: str, n: int) -> bool:
    return tenant == "demo" and n == 0


def job_spec(n: int, tenant: str, models: dict[str, Path], datasets: dict[str, Path]) -> dict[str, Any]:
    """Job ``n`` of a tenant: text LoRAs on the tiny Llama, and for demo's first an image LoRA on the tiny SD
    (the run whose page the browser reads), with few samples; the quality gates are the default ones."""
    if is_image(tenant, n):
        spec = conf(models["image"], datasets[tenant], name=f"crowd-{n}")["job_spec"]
    else:
        spec = {"job": {"name": f"crowd-{n}", "task": "text"}, "dataset": {"uri": str(datasets[tenant])},
                "model_config": {"base_model": str(models["text"]), "lora_rank": 8},
                "training_config": {"batch_size": 4, "max_steps": 24, "learning_rate": 1e-2},
                "eval": {"max_new_tokens": 8, "max_prompts": 1}}
    spec["job"].pop("tenant", None)  # the key says whose job it is
    spec["dataset"].pop("uri")
    return spec


@pytest.fixture(scope="module")
def crowd(airflow: AirflowConfig, tiny_model: Path, tiny_llm: Path) -> Crowd:
    assert airflow.extra["database"] == "postgresql", "the machine's PostgreSQL must answer on 127.0.0.1:5432"
    from lora_tasks.tiny.text_data import write_text_dataset

    ledger = open_ledger(airflow.extra["ledger"])
    keys = {tenant: ledger.create_api_key(tenant, "crowd") for tenant in TENANTS}
    images = {"demo": make_style_dataset(UPLOADS / "demo" / "crowd", count=8, seed=0)}
    texts = {t: write_text_dataset(UPLOADS / t / "crowd-text", count=40, seed=i).parent
             for i, t in enumerate(TENANTS)}
    base = f"{airflow.base_url}/lora/v1"

    def submit(job: tuple[str, int]) -> tuple[str, str, bool]:
        tenant, n = job
        datasets = images if is_image(tenant, n) else texts
        spec = job_spec(n, tenant, {"image": tiny_model, "text": tiny_llm}, datasets)
        headers = {"X-API-Key": keys[tenant]}
        if n % 2:  # the dataset sent along, as an archive
            response = httpx.post(f"{base}/jobs", headers=headers, timeout=120,
                                  data={"job_spec": json.dumps(spec)},
                                  files={"dataset": ("crowd.zip", archive_of(datasets[tenant]), "application/zip")})
        else:
            response = httpx.post(f"{base}/jobs", headers=headers, timeout=120,
                                  json={"job_spec": spec, "dataset_uri": str(datasets[tenant])})
        assert response.status_code == 201, (tenant, n, response.text)
        return response.json()["job_id"], tenant, bool(n % 2)

    work = [(tenant, n) for tenant in TENANTS for n in range(JOBS_EACH)]
    admin = client(airflow, "admin")
    slots = PoolApi(admin).get_pool("gpu_cpu").slots
    pools = PoolApi(admin)
    pools.patch_pool("gpu_cpu", PoolPatchBody(pool="gpu_cpu", slots=4, include_deferred=True), update_mask=["slots"])
    try:  # four trainers at once on the worker's CPU, as an operator would give a busy day
        with ThreadPoolExecutor(len(work)) as pool:
            taken = list(pool.map(submit, work))
        for run_id, _, _ in taken:
            wait_for_run(admin, DAG, run_id, timeout=900)
    finally:
        pools.patch_pool("gpu_cpu", PoolPatchBody(pool="gpu_cpu", slots=slots, include_deferred=True),
                         update_mask=["slots"])
    return Crowd(ledger, {r: t for r, t, _ in taken}, {**{f"{t}/image": d for t, d in images.items()},
                                                       **{f"{t}/text": d for t, d in texts.items()}},
                 {r for r, _, up in taken if up})


def test_twenty_concurrent_jobs_over_five_tenants_each_keep_to_their_own(airflow: AirflowConfig,
                                                                        crowd: Crowd) -> None:
    assert len(crowd.jobs) == len(TENANTS) * JOBS_EACH
    operator = client(airflow, "operator")
    store = open_store(airflow.extra["artifacts"])
    month = datetime.now(UTC).strftime("%Y-%m")
    for run_id, tenant in crowd.jobs.items():
        run = DagRunApi(operator).get_dag_run(DAG, run_id)
        failed = [t for t, ti in states(operator, run_id).items() if ti.state == "failed"]
        assert run.state == "success", {t: log_text(operator, run_id, t)[-1500:] for t in failed}
        dataset = Path(run.conf["job_spec"]["dataset"]["uri"].removeprefix("file://"))
        own = UPLOADS / tenant
        assert dataset.is_relative_to(own), (tenant, dataset)
        if run_id in crowd.uploaded:
            assert dataset.is_relative_to(own / "api-uploads")
        else:
            assert dataset in {crowd.datasets.get(f"{tenant}/image"), crowd.datasets[f"{tenant}/text"]}
        assert crowd.ledger.find_run(run_id).tenant == tenant
    for tenant in TENANTS:
        mine = {r for r, t in crowd.jobs.items() if t == tenant}
        published = [v for v in crowd.ledger.adapter_versions(tenant=tenant) if v.run_id in mine]
        assert len(published) == JOBS_EACH and all(f"/tenants/{tenant}/loras/" in v.uri for v in published)
        for version in published:  # the job spec it was published with names its own tenant's data only
            spec = store.read(f"tenants/{tenant}/loras/{version.name}/v{version.version}/job.yaml").decode()
            assert str(UPLOADS / tenant) in spec and all(str(UPLOADS / o) + "/" not in spec
                                                         for o in TENANTS if o != tenant)
        billed = {line.run_id for line in crowd.ledger.bill(tenant, month)}
        assert mine <= billed and not billed & (set(crowd.jobs) - mine)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Debian's chromedriver: nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1700"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: Any, base: str, then: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/auth/login?next={quote(base + then)}")
    WebDriverWait(driver, 60).until(seen.presence_of_element_located((By.NAME, "username"))).send_keys("operator")
    driver.find_element(By.NAME, "password").send_keys(LOGINS["operator"])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 60).until(lambda d: d.get_cookie("_token"))


def embedded(driver: Any, url: str, ready: str) -> None:
    """Open ``url`` of the Airflow UI and step into the plugin's iframe once element ``#ready`` is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    driver.get(url)
    frame = WebDriverWait(driver, 60).until(seen.presence_of_element_located((By.TAG_NAME, "iframe")))
    driver.switch_to.frame(frame)
    WebDriverWait(driver, 60).until(seen.presence_of_element_located((By.ID, ready)))


def shown(driver: Any, image: Any) -> int:
    """The width the browser decoded an image to (0: broken)."""
    return int(driver.execute_script("return arguments[0].complete ? arguments[0].naturalWidth : 0", image))


def test_an_operator_reads_the_platform_and_a_run_in_the_airflow_ui(airflow: AirflowConfig, crowd: Crowd,
                                                                    browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base = airflow.base_url
    assert httpx.get(f"{base}/lora/ops/", timeout=30).status_code == 401  # no Airflow login, no page
    now = datetime.now(UTC)
    scene = build_scene(crowd.ledger, Path(airflow.extra["workspace"]), airflow.extra["artifacts"], now)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        log_in(browser, base, "/plugin/lora-platform")
        embedded(browser, f"{base}/plugin/lora-platform", "usage")
        expected = queue_rows(crowd.ledger.runs(statuses=("submitted",)), crowd.ledger.runs(statuses=("running",)))
        rows = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
                for r in browser.find_elements(By.CSS_SELECTOR, "#queue tr")[1:]]
        assert rows == [[q.priority, q.gpu_type, str(q.queued), str(q.running)] for q in expected]
        progress = browser.find_element(By.CSS_SELECTOR, f'#running tr[data-run-id="{scene.running}"]').text
        assert "3 of 10" in progress and "0.3500" in progress
        usage = crowd.ledger.month_usage(now.strftime("%Y-%m"))
        for tenant in (*TENANTS, *scene.tenants):
            cells = browser.find_elements(By.CSS_SELECTOR, f'#usage tr[data-tenant="{tenant}"] td')
            assert [c.text for c in cells] == [tenant, str(usage[tenant].runs), f"{usage[tenant].gpu_hours:.4f}",
                                               f"{usage[tenant].cost:.4f}"]
        assert usage["demo"].runs >= JOBS_EACH and all(usage[t].runs == JOBS_EACH for t in TENANTS[1:])
        for chart in ("capacity", "usage-chart"):
            assert shown(browser, browser.find_element(By.ID, chart)) > 0
        grids = browser.find_elements(By.CSS_SELECTOR, "#adapters .adapter img")
        assert grids and all(shown(browser, g) > 0 for g in grids)
        refs = {a.get_attribute("data-ref") for a in browser.find_elements(By.CSS_SELECTOR, "#adapters .adapter")}
        assert scene.adapter in refs
        browser.switch_to.default_content()
        browser.save_screenshot(str(SCREENSHOTS / "platform.png"))

        run_id = next(r for r, t in crowd.jobs.items() if t == "demo" and crowd.ledger.find_run(r).job == "crowd-0")
        embedded(browser, f"{base}/dags/{DAG}/runs/{quote(run_id, safe='')}/plugin/lora-run", "loss-curve")
        assert "crowd-0 for demo" in browser.find_element(By.TAG_NAME, "h1").text
        for image in ("loss-curve", "grid"):
            assert shown(browser, browser.find_element(By.ID, image)) > 0, image
        assert "success" in browser.find_element(By.ID, "run").text
        browser.switch_to.default_content()
        browser.save_screenshot(str(SCREENSHOTS / "run.png"))
    finally:
        scene.close(crowd.ledger, datetime.now(UTC))
