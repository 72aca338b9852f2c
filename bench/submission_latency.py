"""Submission latency, request to queued run: a job through the tenant API (POST /lora/v1/jobs: the key,
the spec checked with the DAG's words, the dataset's location, quotas, the Idempotency-Key, then the
trigger as the service identity) against the same run conf triggered straight at Airflow's REST API by the
same service identity, the strongest fair alternative (the API cannot queue a run faster than Airflow
takes one). Both over one HTTP client, interleaved (alternating which goes first), on one local stack
(`make up`'s configuration) with lora_finetune paused, so every run stays queued and nothing trains.

    python bench/submission_latency.py [--submissions 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

DAG = "lora_finetune"
WARMUP = 5


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def unlimited_tenants(folder: Path) -> Path:
    """The demo tenant without quotas: a hundred queued jobs are the point here, not a refusal."""
    from lora_airflow.local_stack import DEMO, GATEWAY

    path = folder / "tenants.yaml"
    path.write_text(yaml.safe_dump({"shared_read": [str(DEMO / "models")], "gateway": [GATEWAY],
                                    "tenants": {"demo": {"read": [str(DEMO / "uploads" / "demo")]}}}))
    return path


def main() -> int:
    import httpx
    from airflow_client.client import DAGApi, DAGPatchBody, DagRunApi

    from lora_airflow.local_stack import GATEWAY, LOGINS, demo_conf, demo_stack
    from lora_airflow.rest_client import airflow_api, wait_for_dag
    from lora_tasks.ledger.store import open_ledger

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=100)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"tenant API": [], "Airflow REST": []}
    with tempfile.TemporaryDirectory(prefix="submission-bench-") as folder, \
            demo_stack("submission-", {"LORA_TENANTS_FILE": str(unlimited_tenants(Path(folder)))}) as (config, env):
        admin = airflow_api(config.base_url, "admin", LOGINS["admin"])
        wait_for_dag(admin, DAG)
        DAGApi(admin).patch_dag(DAG, DAGPatchBody(is_paused=True))
        key = open_ledger(env["LORA_LEDGER_URL"]).create_api_key("demo", "bench")
        with httpx.Client(base_url=config.base_url, timeout=60) as http:
            token = http.post("/auth/token", json={"username": GATEWAY, "password": env["LORA_GATEWAY_PASSWORD"]}
                              ).json()["access_token"]

            def through_api(spec: dict[str, Any]) -> float:
                body = {"job_spec": {**spec, "job": {k: v for k, v in spec["job"].items() if k != "tenant"}}}
                start = time.perf_counter()
                response = http.post("/lora/v1/jobs", json=body, headers={"X-API-Key": key})
                elapsed = time.perf_counter() - start
                if response.status_code != 201:
                    raise RuntimeError(f"the tenant API answered {response.status_code}: {response.text}")
                return elapsed

            def direct(spec: dict[str, Any]) -> float:
                start = time.perf_counter()
                response = http.post(f"/api/v2/dags/{DAG}/dagRuns", headers={"Authorization": f"Bearer {token}"},
                                     json={"conf": {"job_spec": spec}, "logical_date": None})
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"Airflow answered {response.status_code}: {response.text}")
                return elapsed

            for i in range(WARMUP + args.submissions):
                spec = demo_conf()["job_spec"]
                spec["job"] = {**spec.get("job", {}), "name": f"bench-{i}", "tenant": "demo"}
                order = [("tenant API", through_api), ("Airflow REST", direct)]
                for name, submit in order if i % 2 else order[::-1]:
                    elapsed = submit(spec)
                    if i >= WARMUP:
                        times[name].append(elapsed)
        queued = DagRunApi(admin).get_dag_runs(DAG, state=["queued"], limit=1).total_entries  # pages hold 100
        if queued != 2 * (WARMUP + args.submissions):
            raise RuntimeError(f"{queued} runs are queued, {2 * (WARMUP + args.submissions)} were submitted")
    print(f"{args.submissions} submissions each, interleaved; every one a queued run of {DAG} ({queued} in all)")
    print("| path | p50 (ms) | p95 (ms) | mean (ms) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {1000 * statistics.median(values):.1f} | {1000 * percentile(values, 0.95):.1f} "
              f"| {1000 * statistics.fmean(values):.1f} |")
    api, rest = times["tenant API"], times["Airflow REST"]
    print(f"api_p50_ms {1000 * statistics.median(api):.1f}")
    print(f"api_p95_ms {1000 * percentile(api, 0.95):.1f}")
    print(f"overhead_p50_ms {1000 * (statistics.median(api) - statistics.median(rest)):.1f}")
    print(f"ratio_p50 {statistics.median(api) / statistics.median(rest):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
