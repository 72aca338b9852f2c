"""Shared fixtures: a tiny random-weight SD pipeline and a styled dataset, built once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))  # as Airflow does for its plugins folder
TEST_ROOT = Path(tempfile.mkdtemp(prefix="lora-tests-"))
atexit.register(shutil.rmtree, TEST_ROOT, ignore_errors=True)
EICAR_SIGNATURES = TEST_ROOT / "clamav" / "test.hdb"
EICAR_SIGNATURES.parent.mkdir()
EICAR_SIGNATURES.write_text("44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR\n")
UPLOADS = TEST_ROOT / "uploads"
"""Each tenant's upload folder (<tenant>/), the only datasets its runs may read."""
MODELS = TEST_ROOT / "models"
TENANTS_FILE = TEST_ROOT / "tenants.yaml"
CROWD = ("initech", "umbrella", "hooli", "stark")
"""Tenants reached only through the tenant API, four jobs at a time (with demo: the 20 concurrent jobs)."""
DEMO = REPO / "build" / "demo"
"""make up's demo data, which the README walkthrough test runs on."""
TENANTS_FILE.write_text(yaml.safe_dump({
    "shared_read": [str(MODELS), str(DEMO / "models")],
    "gateway": ["lora-gateway"],
    "tenants": {
        "demo": {"users": ["dag_test", "operator"], "roles": ["admin"],
                 "read": [str(UPLOADS / "demo"), str(DEMO / "uploads" / "demo")]},
        "acme": {"roles": ["admin"], "read": [str(UPLOADS / "acme"), "s3://lora-uploads/acme"],
                 "quotas": {"concurrent_jobs": 1, "gpu_hours_per_month": 10}},
        **{tenant: {"read": [str(UPLOADS / tenant)], "quotas": {"concurrent_jobs": 4}}
           for tenant in CROWD},
    },
}))


def _configure_airflow_and_platform() -> None:
    """Airflow reads its configuration at import: set it (and ours) before any test imports it."""
    from lora_airflow.local_stack import AirflowConfig

    env = AirflowConfig(home=TEST_ROOT / "airflow").env()
    os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW")})
    os.environ.update({
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "LORA_WORKSPACE": str(TEST_ROOT / "workspace"),
        "LORA_ARTIFACT_ROOT": str(TEST_ROOT / "artifacts"),
        "LORA_CLAMAV_DATABASE": str(EICAR_SIGNATURES),
        "LORA_ANTIVIRUS": "clamscan",  # the test signatures, even where a system clamd (with its own) is running
        "LORA_LEDGER_URL": f"sqlite:///{TEST_ROOT / 'ledger.db'}",
        "LORA_TENANTS_FILE": str(TENANTS_FILE),
        "LORA_CACHE_DIR": str(TEST_ROOT / "cache"),
    })


_configure_airflow_and_platform()


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """In the shared model folder every test tenant may read."""
    from lora_tasks.tiny.diffusion import save_pipeline

    return save_pipeline(MODELS / "tiny-sd", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_llm() -> Path:
    """A tiny Llama-architecture causal LM with its BPE tokenizer, in the shared model folder."""
    from lora_tasks.tiny.llm import build_llm

    return build_llm(MODELS / "tiny-llm", seed=0)


@pytest.fixture(scope="session")
def voice_dataset() -> Path:
    """A support team's chats in a pirate's voice, uploaded by tenant demo."""
    from lora_tasks.tiny.text_data import write_text_dataset

    return write_text_dataset(UPLOADS / "demo" / "voice", count=60, layout="messages").parent


@pytest.fixture(scope="session")
def style_dataset() -> Path:
    """Uploaded by tenant demo."""
    from lora_tasks.tiny.sample_data import make_style_dataset

    return make_style_dataset(UPLOADS / "demo" / "sks", count=12, seed=0)


@pytest.fixture(scope="session")
def acme_dataset() -> Path:
    """Uploaded by tenant acme."""
    from lora_tasks.tiny.sample_data import make_style_dataset

    return make_style_dataset(UPLOADS / "acme" / "sks", count=12, seed=1)


def base_job(model: Path, dataset: Path, output: Path) -> dict[str, Any]:
    """A fast job: seed format plus what the tiny model needs."""
    return {
        "job": {"name": "test-style", "tenant": "tests"},
        "dataset": {"uri": str(dataset), "trigger_word": "sks"},
        "model_config": {"base_model": str(model), "lora_rank": 4, "target_modules": ["to_q", "to_k", "to_v",
                                                                                     "to_out.0"]},
        "training_config": {"batch_size": 2, "max_steps": 12, "learning_rate": 1e-3, "resolution": 64,
                            "save_steps": 4},
        "output": {"uri": str(output)},
    }


@pytest.fixture
def write_job(tmp_path: Path, tiny_model: Path, style_dataset: Path) -> Callable[..., Path]:
    """Write a job YAML; keyword arguments ``section={key: value}`` update the base job."""

    def write(name: str = "job.yaml", **sections: dict[str, Any]) -> Path:
        job = base_job(tiny_model, style_dataset, tmp_path / "out")
        for section, values in sections.items():
            job.setdefault(section, {}).update(values)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(job))
        return path

    return write


@pytest.fixture(scope="session")
def single_file(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline as one original-layout checkpoint, as A1111 users keep models."""
    from lora_tasks.tiny.single_file import pipeline_to_single_file

    return pipeline_to_single_file(tiny_model, tmp_path_factory.mktemp("single") / "tiny-sd.safetensors")


@pytest.fixture(scope="session")
def clamav_database() -> Path:
    """A ClamAV signature file that detects the EICAR test string (signatures cannot be downloaded here)."""
    if shutil.which("clamscan") is None:
        pytest.fail("clamscan is missing: `make test` installs Debian's clamav; run it, or apt-get install clamav")
    return EICAR_SIGNATURES


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The test Airflow's metadata DB (SQLite), migrated, with the project's pools."""
    from lora_airflow.local_stack import AirflowConfig, prepare

    config = AirflowConfig(home=TEST_ROOT / "airflow")
    prepare(config)
    return config.home


@pytest.fixture(scope="session")
def image_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.lora_tasks.intake.corpus import build_image_corpus

    return build_image_corpus(tmp_path_factory.mktemp("upload") / "images")


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.lora_tasks.intake.corpus import build_text_corpus

    return build_text_corpus(tmp_path_factory.mktemp("upload") / "texts")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto in server mode) on a loopback port, with dummy credentials."""
    import subprocess
    import urllib.request

    from tenacity import RetryError, retry, retry_if_exception_type, stop_after_delay, wait_fixed

    from lora_airflow.local_stack import free_port

    port = free_port()
    os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"})
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    @retry(retry=retry_if_exception_type(OSError), wait=wait_fixed(0.1), stop=stop_after_delay(30))
    def answering() -> None:
        if server.poll() is not None:
            raise RuntimeError(f"moto server exited with status {server.returncode}")
        urllib.request.urlopen(f"{url}/moto-api/", timeout=1)

    try:
        answering()
    except (RetryError, RuntimeError) as exc:
        server.kill()
        pytest.fail(f"moto server did not start: {exc}")
    yield url
    server.terminate()
    server.wait(timeout=10)
