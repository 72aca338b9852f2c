"""How long each DAG file takes to parse, as the dag-processor sees it.

Each file is parsed in a fresh interpreter that has already imported Airflow (as the
dag-processor has), with DagBag, several times; the median per file is reported. The last
lines read ``max <seconds>`` (slowest file) and ``sum <seconds>`` (all files). Targets:
under 0.5 s per file and 1.5 s in all.

    python bench/dag_parse.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

PARSE = """
import json, sys, time
import airflow.sdk  # loaded by the dag-processor before any DAG file
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "dags": sorted(bag.dag_ids), "errors": list(bag.import_errors)}))
"""


def parse_once(path: Path, env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-c", PARSE, str(path)], env=env, capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    from lora_airflow.local_stack import AirflowConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = AirflowConfig(home=Path(tempfile.mkdtemp(prefix="dag-parse-"))).env()
    env.setdefault("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "plugins")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a dag-processor reads compiled modules, not sources
    medians = {}
    print("| DAG file | DAGs | median parse (s) | runs |")
    print("|---|---|---|---|")
    for path in sorted((ROOT / "dags").glob("*.py")):
        parse_once(path, env)  # compiles what the file imports, once, as a long-running dag-processor has
        runs = [parse_once(path, env) for _ in range(args.runs)]
        if runs[0]["errors"]:
            print(f"{path.name}: import errors {runs[0]['errors']}", file=sys.stderr)
            return 1
        medians[path.name] = statistics.median(r["seconds"] for r in runs)
        print(f"| {path.name} | {', '.join(runs[0]['dags'])} | {medians[path.name]:.3f} | {args.runs} |")
    slowest, total = max(medians.values()), sum(medians.values())
    print(f"{'ok  ' if slowest <= 0.5 else 'FAIL'} every DAG file parses in <= 0.5 s")
    print(f"{'ok  ' if total <= 1.5 else 'FAIL'} all of them in <= 1.5 s")
    print(f"max {slowest:.3f}")
    print(f"sum {total:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
