"""Caption every image: a sidecar caption wins, then an auto-captioner, then the file name.

    python -m lora_tasks.intake.caption DIR_OR_MANIFEST --out CAPTION_DIR [--config job.yaml]
        [--model BLIP_FOLDER_OR_HUB_ID] [--tokenizer BASE_MODEL_FOLDER] [--trigger-word WORD]

The trigger word is prepended once, and captions are trimmed (whole words) to what the
base model's text encoder reads. Results go into ``captioned.jsonl`` and into sidecar files
under ``CAPTION_DIR/captions/`` — never beside the user's own files.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from lora_tasks.cli import entry_point
from lora_tasks.errors import LoraTaskError
from lora_tasks.intake.captioner import BlipCaptioner, Captioner
from lora_tasks.intake.captions import filename_caption, trim_to_tokens, with_trigger
from lora_tasks.intake.manifest import ManifestRow, read_rows, write_rows
from lora_tasks.intake.overlap import refuse_writing_among
from lora_tasks.intake.sniff import IMAGE_TYPES
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import CaptionSection, JobSpec

log = logging.getLogger(__name__)


def caption_rows(rows: list[ManifestRow], captioner: Captioner | None, trigger: str | None,
                 tokenizer: Any | None) -> list[ManifestRow]:
    """Fill caption and caption_source on each row: sidecar > captioner > file name."""
    need = [r for r in rows if not r.caption] if captioner else []
    generated = captioner.captions([Path(str(r.local_path)) for r in need]) if captioner and need else []
    auto = {r.path: text for r, text in zip(need, generated, strict=True)}
    for row in rows:
        if row.caption:
            source, text = "sidecar", row.caption
        elif auto.get(row.path):
            source, text = "auto", auto[row.path]
        else:
            source, text = "filename", filename_caption(row.path)
        text = with_trigger(text, trigger)
        row.caption = trim_to_tokens(text, tokenizer) if tokenizer is not None else text
        row.caption_source = source
    return rows


def _images(source: Path, work: Path, caption_extension: str) -> list[ManifestRow]:
    """Image rows from a manifest, or from scanning a folder into the stage's own folder. A folder is
    the user's own, captioned on their machine without the filter: its sidecars are read with the
    filter's caption rules (the pipeline always passes the filter's kept.jsonl)."""
    if source.is_dir():
        from lora_tasks.intake.scan import scan_dataset

        rows = scan_dataset(str(source), work / "manifest.jsonl", caption_extension)
        _read_sidecars(rows)
    elif source.is_file():
        rows = read_rows(source)
    else:
        raise LoraTaskError(f"{source} is neither a folder nor a manifest. Fix: pass the filter stage's kept.jsonl "
                            "or an image folder")
    return [r for r in rows if r.role == "sample" and r.type in IMAGE_TYPES and not r.error and not r.reason]


def _read_sidecars(rows: list[ManifestRow]) -> None:
    """Sidecar captions of a folder captioned without the filter go through the filter's own steps: the
    antivirus first, then its caption rules."""
    from lora_tasks.intake.antivirus import antivirus_from
    from lora_tasks.intake.filter import attach_captions, reject_infected
    from lora_tasks.settings import platform_settings

    sidecars = [r for r in rows if r.role == "sidecar" and not r.error]
    reject_infected(antivirus_from(platform_settings()), sidecars)
    attach_captions(sidecars, [r for r in rows if r.role == "sample"])


def write_sidecars(rows: list[ManifestRow], folder: Path, caption_extension: str) -> None:
    """One caption file per image under ``folder``, mirroring the dataset's paths (kohya's
    ``photo.png`` -> ``photo.txt``; ``photo.png.txt`` when a ``photo.jpg`` sits beside it). A name a
    folder cannot hold (it is also a folder of other captions) is left out with a warning: the
    captions themselves are in ``captioned.jsonl``."""
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    stems = Counter(PurePosixPath(row.path).with_suffix("") for row in rows)
    names = {row.path: _sidecar_name(PurePosixPath(row.path), stems, caption_extension) for row in rows}
    folders = {parent for name in names.values() for parent in name.parents}
    for row in rows:
        name = names[row.path]
        if name in folders:
            log.warning("no caption file for %s: %s is also a folder of other captions", row.path, name)
            continue
        target = partial / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{row.caption}\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    partial.rename(folder)


def _sidecar_name(path: PurePosixPath, stems: Counter[PurePosixPath], caption_extension: str) -> PurePosixPath:
    if stems[path.with_suffix("")] == 1:
        return path.with_suffix(caption_extension)
    return path.with_name(path.name + caption_extension)


def load_text_tokenizer(spec: JobSpec) -> Any | None:
    """The base model's CLIP tokenizer, to trim captions to what its text encoder reads."""
    from transformers import CLIPTokenizer

    from lora_tasks.spec.base_model import resolve_base_model

    ref = resolve_base_model(spec.model)
    location = ref.config if ref.kind == "single_file" else ref.location
    if not location:
        return None
    try:
        return CLIPTokenizer.from_pretrained(location, subfolder="tokenizer")
    except (OSError, ValueError) as exc:
        log.warning("no tokenizer at %s (%s); captions are not trimmed", location, str(exc).splitlines()[0])
        return None


def caption_images(source: Path, out_dir: Path, caption: CaptionSection, trigger: str | None = None,
                   tokenizer: Any | None = None, caption_extension: str = ".txt",
                   captioner: Captioner | None = None, background: str = "white") -> list[ManifestRow]:
    """Caption the images of ``source`` into ``out_dir`` (captioned.jsonl and captions/)."""
    from lora_tasks.colours import parse_background

    rows = _images(source, out_dir, caption_extension)
    refuse_writing_among((r.source for r in rows), out_dir, ["captions"])
    if captioner is None and caption.model and any(not r.caption for r in rows):
        captioner = BlipCaptioner(caption.model, caption.max_new_tokens, caption.batch_size,
                                  background=parse_background(background))
    caption_rows(rows, captioner, trigger, tokenizer)
    write_sidecars(rows, out_dir / "captions", caption_extension)
    write_rows(out_dir / "captioned.jsonl", rows)
    return rows


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.intake.caption", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="kept.jsonl of the filter stage, or a folder of images")
    parser.add_argument("--out", type=Path, required=True, help="the caption stage's folder")
    parser.add_argument("--config", type=Path, help="job spec: dataset.caption, trigger word, base model tokenizer")
    parser.add_argument("--model", help="BLIP captioner folder or hub id (overrides dataset.caption.model)")
    parser.add_argument("--tokenizer", type=Path, help="a diffusers pipeline folder whose tokenizer sets the limit")
    parser.add_argument("--trigger-word")
    args = parser.parse_args(argv)
    spec = load_job_spec(args.config) if args.config else None
    caption = spec.dataset.caption if spec else CaptionSection()
    if args.model:
        caption = caption.model_copy(update={"model": args.model})
    tokenizer = _tokenizer(args.tokenizer) if args.tokenizer else (load_text_tokenizer(spec) if spec else None)
    trigger = args.trigger_word or (spec.dataset.trigger_word if spec else None)
    extension = spec.dataset.caption_extension if spec else ".txt"
    rows = caption_images(args.source, args.out, caption, trigger, tokenizer, extension,
                          background=spec.dataset.background if spec else "white")
    sources = {s: sum(r.caption_source == s for r in rows) for s in ("sidecar", "auto", "filename")}
    print(f"captioned {len(rows)} images: " + ", ".join(f"{n} {s}" for s, n in sources.items()))
    if fallbacks := sum(bool(r.caption_problem) for r in rows):
        print(f"  {fallbacks} of them had an unusable sidecar caption (see the filter's rejected.jsonl)")
    return 0


def _tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")


if __name__ == "__main__":
    raise SystemExit(main())
