"""``python -m lora_tasks.evaluate --help``: the evaluate stage on its own (see lora_tasks.train.evaluate)."""

from __future__ import annotations

from lora_tasks.train.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
