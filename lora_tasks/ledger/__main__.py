"""Command line for the ledger.

    python -m lora_tasks.ledger migrate
    python -m lora_tasks.ledger usage --tenant acme --month 2026-11
"""

from __future__ import annotations

import argparse

from lora_tasks.cli import entry_point
from lora_tasks.ledger.store import Ledger, migrate
from lora_tasks.settings import platform_settings


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.ledger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="ledger database URL (default: LORA_LEDGER_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the schema")
    usage = sub.add_parser("usage", help="a tenant's bill for a month")
    usage.add_argument("--tenant", required=True)
    usage.add_argument("--month", required=True, help="YYYY-MM")
    args = parser.parse_args(argv)
    url = args.url or platform_settings().ledger_url
    if args.command == "migrate":
        migrate(url)
        print(f"ledger schema up to date at {url}")
        return 0
    lines = Ledger(url).bill(args.tenant, args.month)
    print(f"GPU usage of tenant {args.tenant} in {args.month}")
    print(f"{'run':<48} {'job':<20} {'gpu':<10} {'status':<8} {'GPU hours':>10} {'off-peak':>9} {'cost USD':>10}")
    for line in lines:
        print(f"{line.run_id[:48]:<48} {line.job[:20]:<20} {line.gpu_type:<10} {line.status:<8} "
              f"{line.gpu_hours:>10.3f} {line.off_peak_share:>9.0%} {line.cost:>10.2f}")
    total_hours, total_cost = sum(line.gpu_hours for line in lines), sum(line.cost for line in lines)
    print(f"{'total':<48} {'':<20} {'':<10} {len(lines):<8} {total_hours:>10.3f} {'':>9} {total_cost:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
