"""What a killed export leaves is swept by the next one, and the last complete adapter survives it."""

from __future__ import annotations

from pathlib import Path

from lora_tasks.train.export import export_adapter, sweep_interrupted_exports


def test_a_kill_between_the_two_renames_puts_the_previous_adapter_back(tmp_path: Path) -> None:
    aside = tmp_path / ".adapter.old-4242"
    aside.mkdir()
    (aside / "weights.safetensors").write_text("the last complete adapter")
    (tmp_path / ".adapter.partial-4242").mkdir()
    (tmp_path / ".adapter.partial-4242" / "weights.safetensors").write_text("the new one")
    sweep_interrupted_exports(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert (tmp_path / "adapter" / "weights.safetensors").read_text() == "the last complete adapter"


def test_leftovers_beside_a_complete_adapter_go_and_the_adapter_stays(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "w").write_text("complete")
    for leftover in (".adapter.partial-1", ".adapter.partial-77", ".adapter.old-5"):
        (tmp_path / leftover).mkdir()
    (tmp_path / "checkpoints").mkdir()  # not the export's
    export_adapter(tmp_path, lambda folder: (folder / "w").write_text("newer"), lambda folder: {"x.txt": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "checkpoints"]
    assert (tmp_path / "adapter" / "w").read_text() == "newer"
