"""Captioning: sidecar > BLIP > file name, trigger word once, token limit, sidecars in the workspace."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from lora_tasks.errors import DatasetError, ModelLoadError
from lora_tasks.intake.caption import caption_images, main
from lora_tasks.intake.captioner import BlipCaptioner
from lora_tasks.intake.manifest import read_rows
from lora_tasks.spec.schema import CaptionSection


@pytest.fixture(scope="module")
def blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lora_tasks.tiny.blip import build_blip

    return build_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(tiny_model, subfolder="tokenizer")


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sources_in_order_of_preference(style_dataset: Path, blip: Path, tokenizer: CLIPTokenizer,
                                        tmp_path: Path) -> None:
    before = tree(style_dataset)
    rows = caption_images(style_dataset, tmp_path, CaptionSection(model=str(blip)), "sks", tokenizer)
    assert tree(style_dataset) == before  # nothing written beside the user's files
    by_source = {s: [r for r in rows if r.caption_source == s] for s in ("sidecar", "auto", "filename")}
    assert len(by_source["sidecar"]) == 8 and len(by_source["auto"]) == 4
    assert by_source["sidecar"][0].caption.startswith("sks, a teal")
    for row in rows:
        assert row.caption.count("sks") == 1
        assert len(tokenizer(row.caption, add_special_tokens=False).input_ids) <= tokenizer.model_max_length - 2
        sidecar = tmp_path / "captions" / Path(row.path).with_suffix(".txt")
        assert sidecar.read_text().strip() == row.caption
    assert read_rows(tmp_path / "captioned.jsonl") == sorted(rows, key=lambda r: r.path)


def test_without_a_model_file_names_fill_in(style_dataset: Path, tmp_path: Path) -> None:
    rows = caption_images(style_dataset, tmp_path, CaptionSection(), "sks")
    names = [r for r in rows if r.caption_source == "filename"]
    assert len(names) == 4 and names[0].caption.startswith("sks, teal ")


def test_rerun_is_identical(style_dataset: Path, blip: Path, tokenizer: CLIPTokenizer, tmp_path: Path) -> None:
    caption_images(style_dataset, tmp_path / "a", CaptionSection(model=str(blip)), "sks", tokenizer)
    caption_images(style_dataset, tmp_path / "b", CaptionSection(model=str(blip)), "sks", tokenizer)
    assert (tmp_path / "a" / "captioned.jsonl").read_text().replace(str(tmp_path / "a"), "") == \
        (tmp_path / "b" / "captioned.jsonl").read_text().replace(str(tmp_path / "b"), "")
    assert tree(tmp_path / "a" / "captions") == tree(tmp_path / "b" / "captions")


def test_long_captions_are_trimmed_to_whole_words(tokenizer: CLIPTokenizer) -> None:
    from lora_tasks.intake.captions import trim_to_tokens

    caption = "sks, " + " ".join(f"word{i}" for i in range(60))
    trimmed = trim_to_tokens(caption, tokenizer)
    assert len(tokenizer(trimmed, add_special_tokens=False).input_ids) <= 75
    assert caption.startswith(trimmed) and trimmed.split(" ")[-1].startswith("word")


def test_missing_captioner_names_the_setting() -> None:
    with pytest.raises(ModelLoadError, match=r"dataset.caption.model 'no-org/no-blip' could not be loaded"):
        BlipCaptioner("no-org/no-blip")


def test_cli_on_a_filtered_manifest(style_dataset: Path, blip: Path, tiny_model: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from lora_tasks.intake.antivirus import NoAntivirus
    from lora_tasks.intake.filter import filter_manifest
    from lora_tasks.intake.scan import scan_dataset
    from lora_tasks.spec.schema import FilterSection

    scan_dataset(str(style_dataset), tmp_path / "scan" / "manifest.jsonl", workers=1)
    filter_manifest(tmp_path / "scan" / "manifest.jsonl", tmp_path / "filter", FilterSection(min_side=8), workers=1,
                    antivirus=NoAntivirus())
    assert main([str(tmp_path / "filter" / "kept.jsonl"), "--out", str(tmp_path / "caption"), "--model",
                 str(blip), "--tokenizer", str(tiny_model), "--trigger-word", "sks"]) == 0
    assert "captioned 12 images: 8 sidecar, 4 auto, 0 filename" in capsys.readouterr().out


def test_images_sharing_a_stem_get_their_own_caption_files(tmp_path: Path) -> None:
    from tests.lora_tasks.intake.corpus import photo

    data = tmp_path / "data"
    data.mkdir()
    photo(0).save(data / "cat.jpg")
    photo(1).save(data / "cat.png")
    photo(2).save(data / "dog.png")
    rows = {r.path: r for r in caption_images(data, tmp_path / "out", CaptionSection(), "sks")}
    captions = tmp_path / "out" / "captions"
    assert sorted(p.name for p in captions.iterdir()) == ["cat.jpg.txt", "cat.png.txt", "dog.txt"]
    assert (captions / "cat.png.txt").read_text().strip() == rows["cat.png"].caption


def test_captions_are_never_written_into_the_dataset(style_dataset: Path, tmp_path: Path) -> None:
    before = tree(style_dataset)
    with pytest.raises(DatasetError, match="inside the dataset"):
        caption_images(style_dataset, style_dataset / "captioned", CaptionSection(), "sks")
    assert tree(style_dataset) == before and not (style_dataset / "captioned").exists()


def test_a_folders_sidecars_pass_the_antivirus_before_they_are_read(tmp_path: Path, clamav_database: Path) -> None:
    from tests.lora_tasks.intake.corpus import EICAR, photo

    data = tmp_path / "data"
    data.mkdir()
    for name in ("clean", "infected"):
        photo(0 if name == "clean" else 1).save(data / f"{name}.jpg")
    (data / "clean.txt").write_text("a clean caption")
    (data / "infected.txt").write_bytes(EICAR)
    rows = {r.path: r for r in caption_images(data, tmp_path / "out", CaptionSection(), "sks")}
    assert rows["clean.jpg"].caption == "sks, a clean caption"
    infected = rows["infected.jpg"]
    assert infected.caption_source == "filename" and "antivirus" in str(infected.caption_problem)
    assert "X5O" not in (tmp_path / "out" / "captioned.jsonl").read_text()
