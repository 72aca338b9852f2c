"""
### lora_finetune: one LoRA job, from an uploaded folder to a published adapter

Trigger it from the UI form (dataset, tenant, job name, priority, rank, steps, GPU type) or
the REST API with the same fields as `conf`, or a whole job spec as `conf.job_spec` (YAML
text or a JSON object), whose values win over the form's.

`validate_request` checks the spec, the tenant (against the triggering user) and the base
model before any data is read; `wait_off_peak` defers batch jobs to the next off-peak
window; intake runs in the `cpu_preprocess` pool; `train` runs in its GPU type's pool at
its priority class's weight (set per run by the `lora_airflow.policies` hook), as a local
subprocess or a Kubernetes pod; `evaluate` gates `publish`, which writes an immutable
version to the artifact store; `cleanup` is a teardown: it always runs, and never decides
the run's state; `outcome` does: it fails the run unless every stage succeeded (a stage marked
failed or skipped from outside included). Tasks exchange paths and figures only: data stays
in the run's workspace.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from lora_airflow.errors import NO_RETRY_FOR_INPUT_ERRORS, stage_errors
from lora_airflow.off_peak import WaitOffPeakOperator
from lora_airflow.runners import train_task
from lora_tasks.gpu_types import load_gpu_types
from lora_tasks.settings import platform_settings
from lora_tasks.spec.conf import form_defaults
from lora_tasks.spec.schema import NAME_PATTERN

SETTINGS = platform_settings()
LORA_ADAPTERS = Asset(name="lora_adapters")
"""One event per published version; its extra says which."""
CPU = {"pool": "cpu_preprocess"}
STAGES = ("validate_request", "scan_dataset", "filter_content", "caption", "check_dataset", "train", "evaluate",
          "publish")
GATES = ("wait_off_peak",)
"""Tasks that must succeed too, but return no figures."""
FORM, FORM_SPEC = form_defaults(SETTINGS.form_defaults)

PARAMS = {
    "dataset_uri": Param(FORM.get("dataset_uri", ""), type="string", title="Dataset",
                         description="Folder, file:// or s3:// URI of the upload (inside the tenant's read roots)"),
    "tenant": Param(FORM.get("tenant", "demo"), type="string", pattern=NAME_PATTERN, title="Tenant"),
    "job_name": Param(FORM.get("job_name", "my-lora"), type="string", pattern=NAME_PATTERN, title="Job name"),
    "task": Param(FORM.get("task", "image"), type="string", enum=["image", "text"], title="Task"),
    "priority": Param(FORM.get("priority", "standard"), type="string", enum=["interactive", "standard", "batch"],
                      title="Priority", description="batch waits for the next off-peak window"),
    "base_model": Param(FORM.get("base_model", ""), type="string", title="Base model",
                        description="A diffusers folder, a single-file .safetensors, or a hub id"),
    "trigger_word": Param(FORM.get("trigger_word"), type=["null", "string"], title="Trigger word"),
    "lora_rank": Param(FORM.get("lora_rank", 8), type="integer", minimum=1, maximum=1024, title="LoRA rank"),
    "max_steps": Param(FORM.get("max_steps"), type=["null", "integer"], minimum=1, title="Steps",
                       description="Overrides epochs"),
    "epochs": Param(FORM.get("epochs", 10), type="integer", minimum=1, title="Epochs"),
    "gpu_type": Param(FORM.get("gpu_type", "auto"), type="string",
                      enum=["auto", *load_gpu_types(SETTINGS.gpu_types_file)], title="GPU type"),
    "job_spec": Param(FORM_SPEC, type=["null", "string", "object"], title="Full job spec (optional)",
                      description="YAML text or a JSON object; its values win over the fields above"),
}


@dag(
    dag_id="lora_finetune",
    schedule=None,
    catchup=False,
    params=PARAMS,
    tags=["lora", "training"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "retry_policy": NO_RETRY_FOR_INPUT_ERRORS},
    doc_md=__doc__,
)
def lora_finetune() -> None:
    @task(retries=0)
    def validate_request(params: Any = None, dag_run: Any = None) -> dict[str, Any]:
        """Refuse a bad spec, an unknown tenant or a missing base model with the reason, at once."""
        from lora_airflow.users import user_roles
        from lora_tasks.pipeline import validate

        user = dag_run.triggering_user_name
        conf = {**dict(params), **(dag_run.conf or {})}  # unknown conf keys too, to be refused by name
        with stage_errors():
            return validate.validate_request(conf, user, dag_run.run_id, dag_run.run_after, SETTINGS,
                                           user_roles(user))

    @task(**CPU)
    def scan_dataset(info: dict[str, Any]) -> dict[str, Any]:
        from lora_tasks.pipeline.stages import scan
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return scan(RunInfo.of(info))

    @task(**CPU)
    def filter_content(info: dict[str, Any], scanned: dict[str, Any]) -> dict[str, Any]:
        from lora_tasks.pipeline.stages import filter_content
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return filter_content(RunInfo.of(info), scanned["manifest"])

    @task(**CPU)
    def caption(info: dict[str, Any], filtered: dict[str, Any]) -> dict[str, Any]:
        from lora_tasks.pipeline.stages import caption
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return caption(RunInfo.of(info), filtered["kept"])

    @task(**CPU)
    def check_dataset(info: dict[str, Any], filtered: dict[str, Any], captioned: dict[str, Any],
                      dag_run: Any = None) -> dict[str, Any]:
        """Great Expectations gate; then the held-out split and the training duration prediction."""
        from lora_tasks.pipeline.stages import check_dataset
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return check_dataset(RunInfo.of(info), captioned["captioned"], filtered["rejected"], dag_run.run_id,
                                 SETTINGS)

    @task(**CPU)
    def evaluate(info: dict[str, Any], checked: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        from lora_tasks.pipeline.stages import evaluate
        from lora_tasks.pipeline.workspace import RunInfo

        with stage_errors():
            return evaluate(RunInfo.of(info), trained["adapter"], checked["holdout"], checked["holdout_images"] > 0)

    @task(outlets=[LORA_ADAPTERS])
    def publish(info: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any], dag_run: Any = None,
                outlet_events: Any = None) -> dict[str, Any]:
        from lora_tasks.pipeline.stages import publish
        from lora_tasks.pipeline.workspace import RunInfo

        run = RunInfo.of(info)
        with stage_errors():
            result = publish(run, trained["adapter"], evaluated["report"], SETTINGS, dag_run.run_id)
        outlet_events[LORA_ADAPTERS].extra = {"tenant": run.tenant, "name": run.name, **result}
        return result

    @task(retries=1)
    def cleanup(ti: Any = None, dag_run: Any = None) -> dict[str, Any]:
        """Remove the workspace once published; keep it after a failure, for debugging and resume."""
        from lora_tasks.pipeline.stages import cleanup
        from lora_tasks.pipeline.workspace import RunInfo

        info = ti.xcom_pull(task_ids="validate_request")
        if not info:
            return {"workspace": None}
        return cleanup(RunInfo.of(info), {stage: ti.xcom_pull(task_ids=stage) for stage in STAGES}, dag_run.run_id,
                       SETTINGS)

    @task(trigger_rule="all_done")
    def outcome(ti: Any = None, dag_run: Any = None) -> dict[str, str]:
        """The run's verdict: it succeeds only if every stage did. A teardown never decides a run's state, and
        a stage failed, skipped or marked from outside must not leave the run looking successful."""
        from lora_tasks.pipeline.outcome import judge_run

        states = ti.get_task_states(dag_run.dag_id, task_ids=[*STAGES, *GATES], run_ids=[dag_run.run_id])
        with stage_errors():
            return judge_run(states.get(dag_run.run_id, {}), (*STAGES, *GATES))

    info = validate_request()
    request = "ti.xcom_pull(task_ids='validate_request')"
    wait = WaitOffPeakOperator(task_id="wait_off_peak", priority=f"{{{{ {request}['priority'] }}}}",
                               deadline=f"{{{{ {request}['deadline'] }}}}",
                               predicted_seconds=f"{{{{ {request}['predicted_seconds'] }}}}")
    scanned = scan_dataset(info)
    info >> wait >> scanned  # batch runs wait here for the off-peak window
    filtered = filter_content(info, scanned)
    checked = check_dataset(info, filtered, caption(info, filtered))
    trained = train_task(SETTINGS)(info, checked)
    published = publish(info, trained, evaluate(info, checked, trained))
    published >> cleanup().as_teardown(setups=info)
    published >> outcome()  # runs once publish is done or cannot run, and judges every stage


lora_finetune()
