"""Command line for the adapter registry.

    python -m lora_tasks.registry list [--tenant acme] [--name style] [--all]
    python -m lora_tasks.registry show style@latest --tenant acme
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from lora_tasks.cli import entry_point
from lora_tasks.ledger.adapters import AdapterVersion
from lora_tasks.ledger.store import open_ledger
from lora_tasks.settings import platform_settings


def table(versions: list[AdapterVersion]) -> str:
    lines = [f"{'tenant':<16} {'adapter':<28} {'status':<10} {'public':<6} {'formats':<22} {'created':<20} uri"]
    for v in versions:
        lines.append(f"{v.tenant[:16]:<16} {v.ref[:28]:<28} {v.status:<10} {'yes' if v.public else 'no':<6} "
                     f"{','.join(v.formats)[:22]:<22} {v.created_at.isoformat(timespec='seconds')[:19]:<20} "
                     f"{v.uri or '-'}")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="ledger database URL (default: LORA_LEDGER_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="published adapter versions, oldest first")
    listing.add_argument("--tenant", help="only this tenant's (default: every tenant's, for operators)")
    listing.add_argument("--name", help="only this adapter's versions")
    listing.add_argument("--all", action="store_true", help="include versions still being published")
    show = sub.add_parser("show", help="one version as JSON: name, name@3, name@latest or owner/name@3")
    show.add_argument("ref")
    show.add_argument("--tenant", required=True, help="the tenant asking (another's adapter only if public)")
    args = parser.parse_args(argv)
    ledger = open_ledger(args.url or platform_settings().ledger_url)
    if args.command == "list":
        print(table(ledger.adapter_versions(args.tenant, args.name, published_only=not args.all)))
        return 0
    version = ledger.resolve_adapter(args.tenant, args.ref)
    print(json.dumps({**asdict(version), "ref": version.ref}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
