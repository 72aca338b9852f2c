"""Command line for the ledger.

    python -m lora_tasks.ledger migrate
    python -m lora_tasks.ledger usage --tenant acme --month 2026-11
    python -m lora_tasks.ledger keys create --tenant acme [--label ci]   (prints the key once)
    python -m lora_tasks.ledger keys list [--tenant acme]
    python -m lora_tasks.ledger keys revoke KEY_ID
"""

from __future__ import annotations

import argparse

from lora_tasks.cli import entry_point
from lora_tasks.ledger.store import Ledger, migrate, open_ledger
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
    add_key_commands(sub.add_parser("keys", help="API keys that act for a tenant (serving, the tenant API)"))
    args = parser.parse_args(argv)
    url = args.url or platform_settings().ledger_url
    if args.command == "migrate":
        migrate(url)
        print(f"ledger schema up to date at {url}")
        return 0
    if args.command == "keys":
        return manage_keys(open_ledger(url), args)
    lines = Ledger(url).bill(args.tenant, args.month)
    print(f"GPU usage of tenant {args.tenant} in {args.month}")
    print(f"{'run':<48} {'job':<20} {'gpu':<10} {'status':<8} {'GPU hours':>10} {'off-peak':>9} {'cost USD':>10}")
    for line in lines:
        print(f"{line.run_id[:48]:<48} {line.job[:20]:<20} {line.gpu_type:<10} {line.status:<8} "
              f"{line.gpu_hours:>10.3f} {line.off_peak_share:>9.0%} {line.cost:>10.2f}")
    total_hours, total_cost = sum(line.gpu_hours for line in lines), sum(line.cost for line in lines)
    print(f"{'total':<48} {'':<20} {'':<10} {len(lines):<8} {total_hours:>10.3f} {'':>9} {total_cost:>10.2f}")
    return 0


def add_key_commands(keys: argparse.ArgumentParser) -> None:
    """``keys create|list|revoke``, here and in ``python -m lora_tasks.tenants``."""
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="a new key; printed once, stored hashed")
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", default="")
    key_commands.add_parser("list", help="key ids, tenants, labels, when created and revoked").add_argument("--tenant")
    key_commands.add_parser("revoke", help="stop a key acting for its tenant").add_argument("key_id")


def manage_keys(ledger: Ledger, args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        print(ledger.create_api_key(args.tenant, args.label))
    elif args.keys_command == "revoke":
        ledger.revoke_api_key(args.key_id)
        print(f"revoked {args.key_id}")
    else:
        for key in ledger.api_keys(args.tenant):
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "active"
            print(f"{key.key_id}  {key.tenant:<16} {key.label[:30]:<30} {key.created_at.isoformat(timespec='seconds')}"
                  f"  {revoked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
