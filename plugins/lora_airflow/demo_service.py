"""The demo's last step: the serving process (``python -m lora_tasks.serve``) started in the background on
the demo's base model, a demo API key, and one image generated through it with the adapter just published.

The service keeps running after the demo so that its URLs work (``make down`` stops it); its pid and log
are under ``build/serve``. It reads the same ledger and artifact store as the run, from the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SERVE_HOME = Path(__file__).resolve().parents[2] / "build" / "serve"
PIDS = "pids.json"
STARTUP_SECONDS = 120.0


def start_service(base_model: Path, port: int, env: dict[str, str] | None = None, home: Path = SERVE_HOME) -> str:
    """Start the service in its own process group (stopping one a previous demo left), its pid and log in
    ``home``; returns its URL once ``/healthz`` answers."""
    import httpx

    from lora_airflow.local_stack import wait_until

    stop_service(home)
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "lora_tasks.serve", "--base-model", str(base_model), "--port", str(port)]
    with (home / "serve.log").open("ab") as log:
        process = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    (home / PIDS).write_text(json.dumps({"serve": process.pid}))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited at start; see {home / 'serve.log'}")
        httpx.get(f"{url}/healthz", timeout=5).raise_for_status()

    try:
        wait_until(healthy, retry_on=(httpx.HTTPError,), timeout=STARTUP_SECONDS, interval=0.5,
                   failure=f"the service did not answer in {STARTUP_SECONDS:.0f}s; see {home / 'serve.log'}")
    except TimeoutError:
        stop_service(home)
        raise
    return url


def stop_service(home: Path = SERVE_HOME) -> None:
    """Stop the service ``start_service`` started in ``home``, if any (what ``make down`` calls)."""
    from lora_airflow.local_stack import stop_process_groups

    pids = home / PIDS
    if pids.exists():
        stop_process_groups(json.loads(pids.read_text()))
        pids.unlink()


def generate_demo_image(url: str, api_key: str, adapter: str, prompt: str, out: Path) -> Path:
    """One ``POST /v1/generate`` at the demo model's size, saved as ``out``."""
    import httpx

    reply = httpx.post(f"{url}/v1/generate", headers={"Authorization": f"Bearer {api_key}"}, timeout=600,
                       json={"adapter": adapter, "prompt": prompt, "seed": 0, "steps": 10, "width": 64, "height": 64})
    if reply.status_code != 200:
        raise RuntimeError(f"POST {url}/v1/generate answered {reply.status_code}: {reply.text}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(reply.content)
    return out
