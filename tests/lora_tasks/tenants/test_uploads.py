"""Datasets uploaded with a job (multipart POST /lora/v1/jobs): refused before anything is stored when too
large (declared or sent), unsafe (a member or the file named with '..') or a compression bomb; stored only
under the caller's own prefix, and removed again when the job is not taken."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lora_airflow.local_stack import free_port
from lora_tasks.ledger import Ledger
from lora_tasks.settings import PlatformSettings
from lora_tasks.tenants.api import PREFIX, create_app
from lora_tasks.tenants.uploads import FOLDER
from tests.conftest import UPLOADS

LIMIT = 200_000
SPEC = "job: {name: cats}\nmodel_config: {base_model: org/some-model}\n"


@pytest.fixture
def client(ledger: Ledger, tmp_path: Path) -> tuple[TestClient, str]:
    settings = PlatformSettings(ledger_url=ledger.url, artifact_root=str(tmp_path / "artifacts"),
                                upload_max_bytes=LIMIT,
                                gateway_url=f"http://127.0.0.1:{free_port()}")  # no Airflow: nothing is queued
    root = FastAPI()
    root.mount(PREFIX, create_app(settings))
    return TestClient(root), ledger.create_api_key("acme", "test")


@pytest.fixture(autouse=True)
def nothing_stored_before_or_after() -> Iterator[None]:
    """No test leaves an upload in any tenant's prefix: refused ones are never stored, failed jobs' are removed."""
    def stored() -> set[Path]:
        return {p for p in UPLOADS.glob(f"*/{FOLDER}/**/*")}

    before = stored()
    yield
    assert stored() == before


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def send(client: TestClient, key: str | None, archive: bytes, filename: str = "cats.zip",
         **fields: str) -> tuple[int, str]:
    headers = {"X-API-Key": key} if key else {}
    response = client.post(f"{PREFIX}/jobs", headers=headers, data={"job_spec": SPEC, **fields},
                           files={"dataset": (filename, archive, "application/zip")})
    return response.status_code, response.json()["detail"]


def test_a_member_named_with_dotdot_is_refused_before_it_is_stored(client) -> None:
    api, key = client
    status, detail = send(api, key, zip_of({"ok.txt": b"a cat", "../../demo/evil.png": b"x"}))
    assert status == 422 and "'../../demo/evil.png' has an absolute or '..' path" in detail
    assert "nothing was stored" in detail and "Fix" in detail


def test_a_tar_member_with_an_absolute_name_is_refused(client) -> None:
    api, key = client
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        info = tarfile.TarInfo("/etc/cron.d/evil")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    status, detail = send(api, key, out.getvalue(), filename="cats.tar.gz")
    assert status == 422 and "absolute or '..' path" in detail


@pytest.mark.parametrize("filename", ["../demo/cats.zip", "..", "sub/cats.zip", "cats.exe"])
def test_the_archive_itself_must_have_a_plain_archive_name(client, filename: str) -> None:
    api, key = client
    status, detail = send(api, key, zip_of({"a.txt": b"a cat"}), filename=filename)
    assert status == 422 and detail.startswith("dataset:") and "Fix" in detail


def test_a_zip_bomb_is_refused_before_it_is_stored(client) -> None:
    api, key = client
    bomb = zip_of({"cat.png": bytes(20 << 20)})  # 20 MiB of zeros in about 20 KiB
    assert len(bomb) < LIMIT
    status, detail = send(api, key, bomb)
    assert status == 422 and "a zip bomb" in detail


def test_a_declared_size_over_the_limit_is_refused_before_the_body_is_read(client) -> None:
    api, key = client
    body = b"--x\r\nContent-Disposition: form-data; name=\"job_spec\"\r\n\r\njob: {}\r\n--x--\r\n"
    response = api.post(f"{PREFIX}/jobs", content=body, headers={
        "X-API-Key": key, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(2 << 30)})
    assert response.status_code == 413 and "declares 2,147,483,648 bytes" in response.json()["detail"]


def test_a_body_that_passes_the_limit_is_stopped_whatever_it_declared(client) -> None:
    api, key = client

    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length at all
        yield b"--x\r\nContent-Disposition: form-data; name=\"dataset\"; filename=\"cats.zip\"\r\n\r\n"
        for _ in range(LIMIT // 10_000 + 2):
            yield bytes(10_000)
        yield b"\r\n--x--\r\n"

    response = api.post(f"{PREFIX}/jobs", content=chunks(), headers={
        "X-API-Key": key, "Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and f"passed {LIMIT:,} bytes" in response.json()["detail"]


def test_something_that_is_no_archive_is_refused(client) -> None:
    api, key = client
    status, detail = send(api, key, b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert status == 422 and "is not a zip or tar archive" in detail


def test_an_upload_and_a_dataset_uri_together_are_refused(client) -> None:
    api, key = client
    status, detail = send(api, key, zip_of({"a.txt": b"a cat"}), dataset_uri=str(UPLOADS / "acme"))
    assert status == 422 and detail.startswith("dataset_uri: given beside an uploaded dataset")


def test_an_upload_beside_a_spec_that_names_its_own_dataset_is_refused(client) -> None:
    """Else the run would train on the spec's folder and the upload would sit unused."""
    api, key = client
    spec = SPEC + f"dataset: {{uri: {UPLOADS / 'acme'}}}\n"
    response = api.post(f"{PREFIX}/jobs", headers={"X-API-Key": key}, data={"job_spec": spec},
                        files={"dataset": ("cats.zip", zip_of({"a.txt": b"a cat"}), "application/zip")})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("job_spec.dataset.uri: ") and "Fix: leave" in response.json()["detail"]


def test_the_spec_may_come_as_a_file_part_like_curl_sends_it(client) -> None:
    """curl -F job_spec=@job.yaml -F dataset=@cats.zip: two file parts; the spec is read as text (the job
    then gets as far as Airflow, which does not answer here)."""
    api, key = client
    archive = ("cats.zip", zip_of({"cat.png": b"\x89PNG fake"}), "application/zip")
    response = api.post(f"{PREFIX}/jobs", headers={"X-API-Key": key},
                        files={"job_spec": ("job.yaml", SPEC.encode(), "application/yaml"), "dataset": archive})
    assert response.status_code == 503, response.text
    response = api.post(f"{PREFIX}/jobs", headers={"X-API-Key": key},
                        files={"job_spec": ("job.yaml", b"\xff\xfe job", "application/yaml"), "dataset": archive})
    assert response.status_code == 422 and "'job.yaml' is not UTF-8 text" in response.json()["detail"]


def test_a_json_request_is_limited_too(client) -> None:
    """Without an archive a request is a spec and a URI: a larger body is refused, declared or streamed."""
    api, key = client
    response = api.post(f"{PREFIX}/jobs", content=b"{}", headers={
        "X-API-Key": key, "Content-Type": "application/json", "Content-Length": str(2 << 30)})
    assert response.status_code == 413 and "declares 2,147,483,648 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b'{"job_spec": "'
        for _ in range(110):
            yield b"x" * 10_000
        yield b'"}'

    response = api.post(f"{PREFIX}/jobs", content=chunks(), headers={"X-API-Key": key,
                                                                    "Content-Type": "application/json"})
    assert response.status_code == 413 and "passed 1,048,576 bytes" in response.json()["detail"]


def test_without_a_key_nothing_is_read(client) -> None:
    api, _ = client
    status, detail = send(api, None, zip_of({"a.txt": b"a cat"}))
    assert status == 401 and "missing API key" in detail


def test_a_good_upload_is_removed_again_when_the_job_is_not_taken(client) -> None:
    """It passes every check and is stored under acme's prefix; Airflow does not answer, so the job is not
    taken and the copy goes (the fixture checks nothing is left)."""
    api, key = client
    status, detail = send(api, key, zip_of({"cat.png": b"\x89PNG fake", "cat.txt": b"a cat"}))
    assert status == 503 and "cannot queue jobs right now" in detail


def test_a_bad_spec_or_a_full_quota_is_refused_before_the_archive_is_read(client, ledger: Ledger) -> None:
    """Checked first, so such a request costs no copy: here the archive is a bomb, and the answer is not
    about it."""
    from datetime import UTC, datetime

    api, key = client
    bomb = zip_of({"cat.png": bytes(20 << 20)})
    status, detail = send(api, key, bomb, job_spec=SPEC + "training_config: {batch_size: 0}\n")
    assert status == 422 and "training_config.batch_size" in detail
    ledger.register_run("queued-acme", tenant="acme", job="x", priority="standard", gpu_type="l4",
                        submitted_at=datetime.now(UTC))  # acme may run one job at once
    status, detail = send(api, key, bomb)
    assert status == 429 and "concurrent jobs: 1 of yours" in detail


def test_a_spec_the_dag_refuses_leaves_no_upload(client) -> None:
    api, key = client
    response = api.post(f"{PREFIX}/jobs", headers={"X-API-Key": key},
                        data={"job_spec": SPEC + "training_config: {batch_size: 0}\n"},
                        files={"dataset": ("cats.zip", zip_of({"a.txt": b"a cat"}), "application/zip")})
    assert response.status_code == 422 and "training_config.batch_size" in response.json()["detail"]


def test_with_the_kubernetes_runner_an_upload_goes_where_training_pods_can_read_it() -> None:
    """acme reads a local folder and an S3 prefix: a pod reaches the folder only on the shared data volume;
    a tenant with no root a pod reaches is refused before anything is stored."""
    from lora_tasks.pipeline.tenancy import load_tenants
    from lora_tasks.tenants.jobs import Refused
    from lora_tasks.tenants.uploads import upload_root

    tenants = load_tenants(PlatformSettings().tenants_file)
    crowd = next(name for name in tenants.members if name not in {"acme", "demo"} and tenants[name].read)
    assert str(upload_root("acme", tenants, PlatformSettings(runner="local"))) == str(UPLOADS / "acme")
    assert str(upload_root("acme", tenants, PlatformSettings(runner="kubernetes"))) == "s3://lora-uploads/acme"
    shared = PlatformSettings(runner="kubernetes", shared_data=UPLOADS)
    assert str(upload_root("acme", tenants, shared)) == str(UPLOADS / "acme")
    with pytest.raises(Refused) as refused:
        upload_root(crowd, tenants, PlatformSettings(runner="kubernetes"))
    assert refused.value.status == 422 and "training pods can read (s3://" in refused.value.message


def test_a_multipart_body_with_more_parts_than_a_job_has_names_the_fix(client) -> None:
    api, key = client
    response = api.post(f"{PREFIX}/jobs", headers={"X-API-Key": key}, data={"job_spec": SPEC},
                        files=[("dataset", ("a.zip", b"x", "application/zip")), ("other", ("b.zip", b"y", "x/y")),
                               ("third", ("c.zip", b"z", "x/y"))])
    assert response.status_code == 400 and "Fix: send two parts" in response.json()["detail"]
