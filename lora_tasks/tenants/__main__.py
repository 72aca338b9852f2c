"""Command line for the tenant API.

    python -m lora_tasks.tenants keys create --tenant acme [--label ci]   (prints the key once)
    python -m lora_tasks.tenants keys list [--tenant acme]
    python -m lora_tasks.tenants keys revoke KEY_ID
    python -m lora_tasks.tenants serve [--host 127.0.0.1] [--port 8090]   (the API on its own, at /lora/v1)

Inside Airflow the API is mounted in the api-server (the ``lora_airflow.front_door`` plugin), at the same path.
"""

from __future__ import annotations

import argparse

from lora_tasks.cli import entry_point
from lora_tasks.ledger.__main__ import add_key_commands, manage_keys
from lora_tasks.ledger.store import open_ledger
from lora_tasks.settings import platform_settings


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.tenants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="ledger database URL (default: LORA_LEDGER_URL)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_key_commands(sub.add_parser("keys", help="API keys, each acting for one tenant"))
    serve = sub.add_parser("serve", help="run the tenant API on its own with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    if args.command == "keys":
        return manage_keys(open_ledger(args.url or platform_settings().ledger_url), args)
    import uvicorn
    from fastapi import FastAPI

    from lora_tasks.tenants.api import PREFIX, create_app

    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount(PREFIX, create_app())
    uvicorn.run(root, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
