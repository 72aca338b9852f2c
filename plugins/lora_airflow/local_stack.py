"""Airflow on this machine: api-server, scheduler, dag-processor and triggerer (LocalExecutor).

    python -m lora_airflow.local_stack up [--port 8080]   # `make up`: start it, print URL and logins
    python -m lora_airflow.local_stack down               # `make down`
    python -m lora_airflow.local_stack demo               # `make demo`: lora_finetune on the tiny model

The same code starts the stack for the end-to-end tests and the orchestration benchmark.
Nothing here imports Airflow: its configuration is environment variables, read when an
Airflow process starts, so this module only builds them and runs the processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
LOGINS = {"admin": "admin", "operator": "operator", "viewer": "viewer"}
"""Demo logins (simple auth manager), operators all: tenants never log in to Airflow (include/tenants.yaml)."""
GATEWAY = "lora-gateway"
"""The tenant API's own login (role user: it triggers and cancels runs), listed as include/tenants.yaml's gateway."""
ROLES = f"admin:admin,operator:op,viewer:viewer,{GATEWAY}:user"
DEMO = BUILD / "demo"
DEMO_DATASET = DEMO / "uploads" / "demo" / "sks-style"
DEMO_MODEL = DEMO / "models" / "tiny-sd"
DEMO_JOB = REPO / "include" / "jobs" / "demo.yaml"
DEMO_TEXTS = DEMO / "uploads" / "demo" / "support-voice"
DEMO_LLM = DEMO / "models" / "tiny-llm"
DEMO_TEXT_JOB = REPO / "include" / "jobs" / "demo-text.yaml"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class AirflowConfig:
    home: Path
    port: int = 8080
    db_url: str | None = None
    """SQLAlchemy URL of the metadata DB; SQLite in ``home`` when None."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The process environment for every Airflow command of this installation."""
        keys = self.secrets()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ROLES,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url or f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": keys["api"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.extra.get("worker_log_port", free_port())),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.extra.get("trigger_log_port", free_port())),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]),
            "LORA_GATEWAY_URL": self.base_url, "LORA_GATEWAY_USER": GATEWAY, "LORA_GATEWAY_PASSWORD": keys["gateway"],
        })
        return env

    def secrets(self) -> dict[str, str]:
        """This installation's JWT and API secrets and the tenant API's password, made once."""
        path = self.home / "secrets.json"
        keys = json.loads(path.read_text()) if path.exists() else {}
        if not {"jwt", "api", "gateway"} <= keys.keys():
            keys = {"jwt": uuid.uuid4().hex * 2, "api": uuid.uuid4().hex, "gateway": uuid.uuid4().hex, **keys}
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(keys))
        return keys


def airflow(config: AirflowConfig, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run an ``airflow`` CLI command to completion; its output on failure."""
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), *argv], env=env or config.env(),
                            capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def prepare(config: AirflowConfig) -> dict[str, str]:
    """Metadata DB migrated, pools imported, demo logins written; returns the environment."""
    config.home.mkdir(parents=True, exist_ok=True)
    (config.home / "passwords.json").write_text(json.dumps({**LOGINS, GATEWAY: config.secrets()["gateway"]}))
    env = config.env()
    airflow(config, "db", "migrate", env=env)
    airflow(config, "pools", "import", str(REPO / "include" / "pools.json"), env=env)
    return env


class LocalStack:
    """The four Airflow processes, each in its own process group, logging under ``home/logs``."""

    def __init__(self, config: AirflowConfig) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, env: dict[str, str]) -> None:
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        binary = str(Path(sys.executable).parent / "airflow")
        for name in COMPONENTS:
            argv = [binary, name, *(["--port", str(self.config.port)] if name == "api-server" else [])]
            with (logs / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                                        cwd=REPO)
        (self.config.home / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until every component reports healthy (the execution API too); a component that exits fails at once."""
        import httpx

        def check(client: httpx.Client) -> None:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited early; see {self.config.home}/logs/{name}.log")
            health = client.get("/api/v2/monitor/health").json()
            if not all(health.get(k, {}).get("status") == "healthy" for k in HEALTH_KEYS):
                raise NotHealthy(health)
            client.get("/execution/health")  # the execution API sets itself up on first use

        with httpx.Client(base_url=self.config.base_url, timeout=30) as client:
            wait_until(lambda: check(client), retry_on=(httpx.HTTPError, ValueError, NotHealthy), timeout=timeout,
                       interval=1, failure=f"Airflow was not healthy after {timeout:.0f}s; see {self.config.home}/logs")

    def stop(self) -> None:
        stop_process_groups({n: p.pid for n, p in self.processes.items()})
        for process in self.processes.values():
            process.wait(timeout=60)


class NotHealthy(Exception):
    """Airflow answers, but some component is not healthy yet."""


def wait_until(check: Callable[[], None], *, retry_on: tuple[type[Exception], ...], timeout: float, interval: float,
               failure: str) -> None:
    """Call ``check`` until it returns, again every ``interval`` seconds while it raises one of ``retry_on``
    (anything else propagates at once); TimeoutError(``failure``) after ``timeout`` seconds."""
    from tenacity import RetryError, retry, retry_if_exception_type, stop_after_delay, wait_fixed

    retrying = retry(retry=retry_if_exception_type(retry_on), wait=wait_fixed(interval), stop=stop_after_delay(timeout))
    try:
        retrying(check)()
    except RetryError:
        raise TimeoutError(failure) from None


def stop_process_groups(pids: dict[str, int], grace: float = 30) -> None:
    """SIGTERM every process of each component's process group (the component and all it started),
    then SIGKILL whatever is left after ``grace`` seconds, processes started meanwhile included."""
    import psutil

    groups = set(pids.values())

    def members() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(process.pid) in groups:
                    found.append(process)
        return found

    for signal_them, wait in ((psutil.Process.terminate, grace), (psutil.Process.kill, 10)):
        running = members()
        for process in running:
            with contextlib.suppress(psutil.NoSuchProcess):
                signal_them(process)
        psutil.wait_procs(running, timeout=wait)


# ------------------------------------------------------------------------------ demo


def demo_environment() -> dict[str, str]:
    """Where the demo keeps its model, data, workspace, artifacts and antivirus signatures."""
    signatures = DEMO / "clamav" / "demo.hdb"
    signatures.parent.mkdir(parents=True, exist_ok=True)
    signatures.write_text("44d88612fea8a8f36de82e1278abb02f:68:Demo.EICAR\n")  # the EICAR test file only
    return {"LORA_WORKSPACE": str(DEMO / "workspace"), "LORA_ARTIFACT_ROOT": str(DEMO / "artifacts"),
            "LORA_CLAMAV_DATABASE": str(signatures), "LORA_FORM_DEFAULTS": str(DEMO_JOB), "HF_HUB_OFFLINE": "1"}


def demo_conf(job: Path = DEMO_JOB, dataset: Path = DEMO_DATASET, model: Path = DEMO_MODEL) -> dict[str, Any]:
    import yaml

    spec = yaml.safe_load(job.read_text())
    spec["dataset"]["uri"] = str(dataset)
    spec["model_config"]["base_model"] = str(model)
    spec.pop("output", None)
    return {"job_spec": spec}


def build_demo_inputs() -> None:
    """The tiny base models and the sample datasets the demo jobs and the trigger form point at."""
    from lora_tasks.tiny.diffusion import save_pipeline
    from lora_tasks.tiny.llm import build_llm
    from lora_tasks.tiny.sample_data import make_style_dataset
    from lora_tasks.tiny.text_data import write_text_dataset

    if not (DEMO_MODEL / "model_index.json").exists():
        save_pipeline(DEMO_MODEL, "tiny", seed=0)
    if not DEMO_DATASET.exists():
        make_style_dataset(DEMO_DATASET, count=24, seed=0)
    if not (DEMO_LLM / "config.json").exists():
        build_llm(DEMO_LLM, seed=0)
    if not DEMO_TEXTS.exists():
        write_text_dataset(DEMO_TEXTS, count=60, layout="messages")


@contextlib.contextmanager
def demo_stack(prefix: str, extra: dict[str, str] | None = None) -> Iterator[tuple[AirflowConfig, dict[str, str]]]:
    """A throwaway stack configured as `make up` configures it (demo data, the form's defaults), with its
    own workspace, artifacts, ledger and cache in a new temporary folder, and ``extra`` settings on top:
    what the benchmarks measure."""
    build_demo_inputs()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    config = AirflowConfig(home=work / "airflow", port=free_port())
    env = prepare(config)
    env.update(demo_environment())
    env.update({"LORA_WORKSPACE": str(work / "workspace"), "LORA_ARTIFACT_ROOT": str(work / "artifacts"),
                "LORA_LEDGER_URL": f"sqlite:///{work / 'ledger.db'}", "LORA_CACHE_DIR": str(work / "cache"),
                **(extra or {})})
    stack = LocalStack(config)
    stack.start(env)
    try:
        stack.wait_healthy()
        yield config, env
    finally:
        stack.stop()


def run_demo() -> int:
    """Build the tiny models and data, then run lora_finetune with dag.test() on the image job (and serve
    its adapter), then on the text job, and report."""
    build_demo_inputs()
    config = AirflowConfig(home=BUILD / "airflow")
    os.environ.update(demo_environment())
    env = prepare(config)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW") or k == "PYTHONPATH"})
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # the run's report, not every log line
    sys.path[:0] = [str(REPO), str(REPO / "plugins")]
    return _test_run(demo_conf()) or _test_run(demo_conf(DEMO_TEXT_JOB, DEMO_TEXTS, DEMO_LLM))


def _test_run(conf: dict[str, Any]) -> int:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag("lora_finetune")
    run = dag.test(run_conf=conf)
    results = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()}
    if run.state != "success":
        failed = [ti.task_id for ti in run.get_task_instances() if ti.state == "failed"]
        print(f"\nlora_finetune {run.run_id}: {run.state}; failed tasks: {failed}")
        return 1
    print(demo_report(results))
    if conf["job_spec"]["job"].get("task", "image") == "image":
        print(serve_published(results))
    return 0


def serve_published(results: dict[str, Any]) -> str:
    """Start the serving process, give the run's tenant a demo API key and generate one image with the
    adapter the run published; report where everything is."""
    import yaml

    from lora_airflow.demo_service import generate_demo_image, start_service
    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.settings import PlatformSettings

    tenant, ref = results["validate_request"]["tenant"], results["publish"]["ref"]
    prompt = f"{yaml.safe_load(DEMO_JOB.read_text())['dataset']['trigger_word']}, a teal circle"
    url = start_service(DEMO_MODEL, choose_port(int(os.environ.get("LORA_SERVE_PORT", "8000"))))
    key = open_ledger(PlatformSettings().ledger_url).create_api_key(tenant, label="make demo")
    image = generate_demo_image(url, key, ref, prompt, DEMO / "served.png")
    body = json.dumps({"adapter": ref, "prompt": prompt, "width": 64, "height": 64, "steps": 10})
    return "\n".join([
        f"  served:       {image.relative_to(REPO)} from POST {url}/v1/generate (adapter {ref}, tenant {tenant})",
        f"  metrics:      {url}/metrics  (the service keeps running; `make down` stops it)",
        f"  try it:       curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f"-d '{body}' {url}/v1/generate -o out.png",
    ])


def choose_port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free one."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def demo_report(results: dict[str, Any]) -> str:
    info, published, evaluated = results["validate_request"], results["publish"], results["evaluate"]
    filtered, trained = results["filter_content"]["summary"], results["train"]
    stages = ("validate_request", "scan_dataset", "filter_content", "caption", "check_dataset", "train",
              "evaluate", "publish")
    text = evaluated.get("images") is None
    held = "never trained on" if evaluated["held_out"] else "trained on: too few to hold out"
    gate = f"x{evaluated['loss_ratio']:.3f}, gate x{evaluated['max_loss_ratio']}"
    sampled = trained.get("training_samples")
    progress = (f", training_samples.png (steps {', '.join(map(str, sampled['steps']))}, "
                f"{sampled['seconds_per_image']:.2f} s an image)" if sampled and sampled["images"] else "")
    lines = [
        "",
        f"lora_finetune succeeded: {info['tenant']}/{info['name']} {published['version']} ({published['ref']})",
        f"  adapter:      {published['uri']} ({published['files']} files, manifest.json last)",
        "  model card:   README.md there, with " + ("the generations, base | LoRA, and loss_curve.png" if text else
                                                    f"sample_grid.png ({evaluated['samples']} samples, base | LoRA)"
                                                    f"{progress} and loss_curve.png"),
        f"  intake:       {filtered['records']['kept']} records kept, {filtered['records']['rejected']} rejected"
        if text else f"  intake:       {filtered['kept']} of {filtered['samples']} images kept",
        f"  train loss:   {trained['train_loss']['first']:.4f} -> {trained['train_loss']['last']:.4f} in "
        f"{trained['steps']} steps, peak memory {trained['peak_memory_bytes'] / 2**20:.0f} MiB",
        f"  held-out perplexity ({evaluated['compared_examples']} records {held}): base "
        f"{evaluated['base_perplexity']:.1f} -> with LoRA {evaluated['lora_perplexity']:.1f} ({gate})" if text else
        f"  held-out loss ({evaluated['compared_images']} images {held}): base {evaluated['base_loss']:.4f} -> "
        f"with LoRA {evaluated['lora_loss']:.4f} ({gate})",
        "  stage seconds: " + ", ".join(f"{s} {results[s]['seconds']:.1f}" for s in stages if results.get(s)),
    ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_airflow.local_stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Airflow in the background")
    up.add_argument("--port", type=int, default=int(os.environ.get("LORA_AIRFLOW_PORT", "8080")))
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("demo", help="run lora_finetune once on the tiny model (dag.test)")
    args = parser.parse_args(argv)
    home = BUILD / "airflow"
    if args.command == "demo":
        return run_demo()
    if args.command == "down":
        from lora_airflow.demo_service import stop_service

        pids = home / "pids.json"
        if pids.exists():
            stop_process_groups(json.loads(pids.read_text()))
            pids.unlink()
        stop_service()
        print("Airflow and the demo's serving process stopped")
        return 0
    config = AirflowConfig(home=home, port=args.port, db_url=os.environ.get("LORA_AIRFLOW_DB_URL"))
    build_demo_inputs()  # what the trigger form proposes must exist
    os.environ.update(demo_environment())
    stack = LocalStack(config)
    stack.start(prepare(config))
    stack.wait_healthy()
    print(f"Airflow is up: {config.base_url}  (operator logins: {', '.join(f'{u}/{p}' for u, p in LOGINS.items())})")
    print(f"the trigger form proposes the demo job ({DEMO_JOB.relative_to(REPO)}): dataset {DEMO_DATASET}, "
          f"base model {DEMO_MODEL}")
    from lora_tasks.ledger.store import open_ledger
    from lora_tasks.settings import PlatformSettings

    key = open_ledger(PlatformSettings().ledger_url).create_api_key("demo", label="make up")
    print(f"tenants' door: {config.base_url}/lora/v1/docs   demo tenant key: {key}")
    print(f"operators' door: {config.base_url}/plugin/lora-platform (the platform page; each run's LoRA tab)")
    print(f"logs: {home}/logs   stop: make down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
