"""Every DAG imports cleanly and fast, follows the house rules, and puts GPU work in GPU pools."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
AIRFLOW_MODULES = sorted((REPO / "plugins").rglob("*.py"))
HEAVY = ["torch", "diffusers", "transformers", "pandas", "great_expectations", "peft", "imagehash", "datasketch"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


def test_every_dag_imports(dagbag) -> None:
    assert not dagbag.import_errors
    assert set(dagbag.dag_ids) == {"lora_finetune", "lora_nightly_batch", "gpu_capacity_planner"}


def test_house_rules(dagbag) -> None:
    for dag in dagbag.dags.values():
        assert dag.tags and "lora" in dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag.dag_id
        assert dag.default_args["owner"] == "ml-platform"
        assert dag.default_args["retries"] >= 2, dag.dag_id
        for task in dag.tasks:
            assert task.owner == "ml-platform", task.task_id
    finetune = dagbag.dags["lora_finetune"]
    assert finetune.get_task("validate_request").retries == 0  # a bad request does not improve by retrying
    assert all(t.retries >= 1 for t in finetune.tasks if t.task_id != "validate_request")
    from lora_airflow.errors import NO_RETRY_FOR_INPUT_ERRORS

    assert all(t.retry_policy is NO_RETRY_FOR_INPUT_ERRORS for t in finetune.tasks)


def test_pipeline_order(dagbag) -> None:
    dag = dagbag.dags["lora_finetune"]
    order = ["validate_request", "wait_off_peak", "scan_dataset", "filter_content", "caption", "check_dataset",
             "train", "evaluate", "publish", "cleanup"]
    for upstream, downstream in itertools.pairwise(order):
        assert upstream in dag.get_task(downstream).upstream_task_ids | _ancestors(dag, downstream), downstream
    assert dag.get_task("cleanup").is_teardown
    verdict = dag.get_task("outcome")
    assert verdict.trigger_rule == "all_done" and "publish" in _ancestors(dag, "outcome")
    assert not verdict.downstream_task_ids  # a leaf: it decides the run's state


def _ancestors(dag, task_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(dag.get_task(task_id).upstream_task_ids)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += dag.get_task(current).upstream_task_ids
    return seen


def test_gpu_work_is_in_gpu_pools_and_cpu_work_is_not(dagbag) -> None:
    import json

    pools = json.loads((REPO / "include" / "pools.json").read_text())
    finetune = dagbag.dags["lora_finetune"]
    train = finetune.get_task("train")
    assert train.pool.startswith("gpu_") and train.pool in pools
    assert train.weight_rule == "absolute" or str(train.weight_rule).endswith("absolute")
    for task_id in ("scan_dataset", "filter_content", "caption", "check_dataset", "evaluate"):
        assert finetune.get_task(task_id).pool == "cpu_preprocess"
    assert all(pools[name]["include_deferred"] for name in pools if name.startswith("gpu_"))


def test_capacity_planner_runs_every_five_minutes(dagbag) -> None:
    planner = dagbag.dags["gpu_capacity_planner"]
    assert planner.catchup is False and planner.max_active_runs == 1
    assert planner.timetable.expression == "*/5 * * * *"
    assert {t.task_id for t in planner.tasks} == {"decide", "apply"}


def test_nightly_batch_fires_when_the_off_peak_stretch_begins(dagbag) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    nightly = dagbag.dags["lora_nightly_batch"]
    assert nightly.catchup is False and nightly.max_active_runs == 1
    timetable = decode_timetable(encode_timetable(nightly.timetable))  # what the scheduler runs
    friday_noon = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)  # a sequence, not "now"
    fired = []
    last = DataInterval(friday_noon, friday_noon)
    for _ in range(4):  # Friday 22:00, then Monday to Wednesday 22:00: nothing inside the weekend
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        fired.append(info.run_after.astimezone(ZoneInfo("Europe/Paris")).strftime("%a %H:%M"))
        last = info.data_interval
    assert fired == ["Fri 22:00", "Mon 22:00", "Tue 22:00", "Wed 22:00"]


def test_trigger_form_params(dagbag) -> None:
    params = dagbag.dags["lora_finetune"].params
    for name in ("dataset_uri", "tenant", "job_name", "task", "priority", "lora_rank", "max_steps", "epochs",
                 "gpu_type", "job_spec"):
        assert name in params, name
    assert params.get_param("priority").schema["enum"] == ["interactive", "standard", "batch"]
    assert params.get_param("lora_rank").schema["minimum"] == 1


@pytest.mark.parametrize("path", DAG_FILES + AIRFLOW_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_heavy_imports_at_module_level(path: Path) -> None:
    """DAG files are parsed every few seconds: importing one must not load the ML stack."""
    module = ".".join(path.relative_to(REPO / "plugins").with_suffix("").parts).removesuffix(".__init__") \
        if path.is_relative_to(REPO / "plugins") else path.stem
    code = (
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(REPO / 'plugins')!r}, {str(REPO / 'dags')!r}]\n"
        f"runpy.run_path({str(path)!r}) if {path.parent.name == 'dags'} else __import__({module!r})\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("path", AIRFLOW_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_plugin_file_shadows_a_library(path: Path) -> None:
    """Airflow's plugin loader imports every file of the plugins folder under its bare name into
    sys.modules: a ``runners/kubernetes.py`` would replace the kubernetes client for the whole process."""
    import importlib.util

    if path.name == "__init__.py" or path.stem == "airflow_local_settings":
        return
    spec = importlib.util.find_spec(path.stem)
    assert spec is None or Path(str(spec.origin)).is_relative_to(REPO / "plugins"), \
        f"plugins/{path.relative_to(REPO / 'plugins')} is named like the installed module {spec.origin}"
