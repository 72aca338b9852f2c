"""Run the service.

    python -m lora_tasks.serve [--base-model DIR] [--host 127.0.0.1] [--port 8000] [--device cpu]
                               [--policy lru] [--pipeline-slots 8]

Every other setting is a ``LORA_SERVE_*`` variable (``settings.ServeSettings``); the artifact store and
the ledger are the platform's (``LORA_ARTIFACT_ROOT``, ``LORA_LEDGER_URL``).
"""

from __future__ import annotations

import argparse

from lora_tasks.cli import entry_point
from lora_tasks.serve.settings import ServeSettings


def settings_from(args: argparse.Namespace) -> ServeSettings:
    given = {k: v for k, v in vars(args).items() if v is not None}
    return ServeSettings(**given)


@entry_point
def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from lora_tasks.serve.app import create_app

    parser = argparse.ArgumentParser(prog="python -m lora_tasks.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", dest="base_model", help="diffusers pipeline folder")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--device")
    parser.add_argument("--policy", help="lru, lfu, arc or tinylfu")
    parser.add_argument("--pipeline-slots", dest="pipeline_slots", type=int)
    settings = settings_from(parser.parse_args(argv))
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
