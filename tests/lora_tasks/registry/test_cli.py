"""``python -m lora_tasks.registry``: list and show, with ``name@latest`` and the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lora_tasks.ledger.store import open_ledger
from lora_tasks.registry.__main__ import main

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    for run in ("run-1", "run-2", "run-3"):
        version = ledger.reserve_adapter_version("acme", "style", run, base_model="tiny", formats=["diffusers"],
                                                 created_at=NOW)
        if run != "run-3":  # run-3 is still uploading
            ledger.mark_adapter_published("acme", "style", version, uri=f"file:///a/v{version}", figures={},
                                          public=False, published_at=NOW)
    assert main(["--url", url, "list", "--tenant", "acme"]) == 0
    listing = capsys.readouterr().out
    assert "style@1" in listing and "style@2" in listing and "style@3" not in listing
    assert main(["--url", url, "list", "--all"]) == 0
    assert "publishing" in capsys.readouterr().out
    assert main(["--url", url, "show", "style@latest", "--tenant", "acme"]) == 0
    assert '"version": 2' in capsys.readouterr().out
    assert main(["--url", url, "show", "style", "--tenant", "globex"]) == 2
    assert "no adapter 'style' for tenant 'globex'" in capsys.readouterr().err
