"""Keep what is safe and usable; reject the rest with a reason code and a sentence.

    python -m lora_tasks.intake.filter STAGE_DIR/manifest.jsonl --out FILTER_DIR [--task image|text]
        [--config job.yaml]

Writes ``kept.jsonl``, ``rejected.jsonl`` and ``summary.json`` (counts per reason) into
the filter's own folder. Checks run cheapest first, and a file is rejected for the first
problem found: scan errors, antivirus, type, lying extension, pixel count (before any
decoding), size, data after the image's end, decoding, NSFW score, then exact and near
duplicates (of duplicates the lossless copy is kept, then the one with most pixels, then the
first by path; a dropped copy's caption moves to the kept one if it has none). Every image
mode decodes (palette, 1-bit, 16-bit, alpha, CMYK; an animation's first frame). Sidecar
captions are data too: scanned by the antivirus, then read only if they are non-empty UTF-8
text under 64 KiB; an unusable one is rejected with its reason and its image falls back to
the captioner or its file name. Text datasets are judged record by record (UTF-8 and layout per file;
empty, length, exact and near duplicates per record), in :mod:`lora_tasks.intake.text_filter`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lora_tasks.cli import entry_point
from lora_tasks.colours import parse_background
from lora_tasks.intake.antivirus import Antivirus, antivirus_from
from lora_tasks.intake.captions import read_caption
from lora_tasks.intake.decode import check_image, conversion_notes
from lora_tasks.intake.manifest import ManifestRow, note_kinds, read_rows, write_rows
from lora_tasks.intake.nsfw import NsfwDetector, nsfw_detector
from lora_tasks.intake.overlap import refuse_writing_among
from lora_tasks.intake.scan import local_name, parallel_map
from lora_tasks.intake.sniff import ARCHIVE_TYPES, IMAGE_TYPES, PARQUET_TYPE, TEXT_TYPE, claimed_type, describe
from lora_tasks.settings import platform_settings
from lora_tasks.spec.loading import load_job_spec
from lora_tasks.spec.schema import FilterSection

log = logging.getLogger(__name__)

CLEAN = "clean"
"""The filter's folder of re-encoded images (dataset.filter.trailing_data: reencode), rebuilt by every run."""


@dataclass
class FilterResult:
    kept: list[ManifestRow]
    rejected: list[ManifestRow]
    summary: dict[str, Any]


def _reject(row: ManifestRow, reason: str, message: str) -> None:
    row.reason, row.message = reason, message


def reject_infected(antivirus: Antivirus, rows: list[ManifestRow]) -> None:
    """Reject what the antivirus finds infected or cannot vouch for (it fails closed)."""
    verdicts = antivirus.scan([Path(str(r.local_path)) for r in rows])
    for row, verdict in zip(rows, verdicts, strict=True):
        fallback = "; its image is captioned by the captioner or from its file name instead" \
            if row.role == "sidecar" else ""
        if verdict.status == "infected":
            _reject(row, "antivirus", f"{row.path} matches the antivirus signature {verdict.detail}; it was "
                    f"not used{fallback}")
        elif verdict.status == "unscanned":
            _reject(row, "antivirus_unscanned", f"{row.path} could not be scanned for viruses "
                    f"({verdict.detail}), so it was not used{fallback}")


def attach_captions(sidecars: list[ManifestRow], samples: list[ManifestRow]) -> None:
    """Read each sidecar the antivirus passed; an unusable one is rejected, and its images are told why."""
    owners: dict[str, list[ManifestRow]] = {}
    for row in samples:
        if row.sidecar:
            owners.setdefault(row.sidecar, []).append(row)
    for sidecar in sidecars:
        images = owners.get(sidecar.path, [])
        text = None
        if not sidecar.reason:
            text, problem = read_caption(str(sidecar.local_path), sidecar.size)
            if problem:
                names = " and ".join(r.path for r in images)
                _reject(sidecar, problem[0], f"{sidecar.path}, the caption of {names}, {problem[1]}; the "
                        "image is captioned by the captioner or from its file name instead")
        for image in images:
            image.caption = text
            if text is None:
                image.caption_problem = f"its caption {sidecar.path} was not used: {sidecar.reason}"


class ManifestFilter:
    """One filtering pass over a scanned manifest."""

    def __init__(self, options: FilterSection, task: str, antivirus: Antivirus, detector: NsfwDetector,
                 workers: int, out_dir: Path, background: str = "white") -> None:
        self.options, self.task, self.antivirus, self.detector = options, task, antivirus, detector
        self.workers, self.out_dir, self.background = workers, out_dir, parse_background(background)
        self.clean_dir = out_dir / CLEAN
        self.records: list[ManifestRow] = []
        """Rejected records of kept text files (text jobs)."""

    def run(self, rows: list[ManifestRow]) -> FilterResult:
        rows = sorted(rows, key=lambda r: r.path)
        samples = [r for r in rows if r.role == "sample"]
        archives = [r for r in rows if r.role == "archive"]
        sidecars = [r for r in rows if r.role == "sidecar"]
        for row in samples + sidecars + [r for r in archives if r.error]:
            if row.error:
                _reject(row, row.error, _scan_problem(row))
        # one antivirus batch for samples and captions; archive members are scanned one by one, not their archive
        reject_infected(self.antivirus, [r for r in samples + sidecars if not r.reason])
        attach_captions(sidecars, samples)
        live = [r for r in samples if not r.reason]
        if self.task == "image":
            self._image_checks(live)
        else:
            self._text_checks(live)
        rejected = [r for r in rows if r.reason] + self.records  # samples, archives, sidecar captions, records
        kept = [r for r in samples if not r.reason]
        return FilterResult(kept, rejected, self._summary(rows, kept))

    # ---------------------------------------------------------------- shared checks

    def _type_checks(self, rows: list[ManifestRow], accepted: set[str]) -> list[ManifestRow]:
        for row in rows:
            actual = str(row.type)
            claimed = claimed_type(row.path)
            if actual == "heic" and self.task == "image":
                _reject(row, "unsupported_type", f"{row.path} is a HEIC image, which this platform does not decode; "
                        "convert it to JPEG or PNG (an iPhone does so with Settings > Camera > Formats > Most "
                        "Compatible)")
            elif actual not in accepted:
                nested = "#" in row.source and actual in ARCHIVE_TYPES
                what = "an archive inside an archive (not expanded)" if nested else describe(actual)
                dataset = "an image" if self.task == "image" else "a text"
                _reject(row, "unsupported_type", f"{row.path} is {what}, which {dataset} dataset cannot use")
            elif claimed is not None and claimed != actual:
                _reject(row, "extension_mismatch", f"{row.path} is named like {describe(claimed)} but its bytes "
                        f"are {describe(actual)}; rename or re-export it")
        return [r for r in rows if not r.reason]

    # ---------------------------------------------------------------------- images

    def _image_checks(self, rows: list[ManifestRow]) -> None:
        opts = self.options
        for row in self._type_checks(rows, IMAGE_TYPES):
            width, height = row.width or 0, row.height or 0
            if width * height > opts.max_pixels:
                _reject(row, "decompression_bomb", f"{row.path} declares {width}x{height} = {width * height} "
                        f"pixels, over the {opts.max_pixels} limit; it was not decoded")
            elif min(width, height) < opts.min_side:
                _reject(row, "too_small", f"{row.path} is {width}x{height}; its short side is under "
                        f"{opts.min_side} px")
            elif max(width, height) > opts.max_side:
                _reject(row, "too_large", f"{row.path} is {width}x{height}; its long side is over {opts.max_side} px")
            elif row.trailing_bytes and opts.trailing_data == "reject":
                _reject(row, "trailing_data", f"{row.path} has data after the end of the image ({row.trailing_bytes} "
                        "bytes: an appended file, a phone's motion-photo video, or a polyglot), so it was not used. "
                        "Fix: re-export it, or set dataset.filter.trailing_data: reencode to keep its pixels only")
        live = [r for r in rows if not r.reason]
        items = [(str(r.local_path), self._clean_path(r), self.background) for r in live]
        for row, (_, clean, _), result in zip(live, items, parallel_map(check_image, items, self.workers),
                                              strict=True):
            if "error" in result:
                _reject(row, "undecodable", f"{row.path} cannot be decoded ({result['error']}): truncated or "
                        "corrupt")
                continue
            row.phash = result["phash"]
            if clean:
                row.local_path = clean
                row.note(f"reencoded: {row.trailing_bytes} bytes after the end of the image were dropped; its "
                         "pixels were re-encoded as a PNG")
            for note in conversion_notes(row.mode, row.frames, result["transparent"]):
                row.note(note)
        self._nsfw([r for r in live if not r.reason])
        self._exact_duplicates([r for r in live if not r.reason])
        if opts.near_duplicate_distance is not None:
            self._near_duplicate_images([r for r in live if not r.reason], opts.near_duplicate_distance)

    def _clean_path(self, row: ManifestRow) -> str | None:
        """Where a re-encoded copy goes, for an image with data after its end (never the original's bytes)."""
        if not row.trailing_bytes or self.clean_dir is None:
            return None
        return str(self.clean_dir / f"{local_name(row.path)}.png")  # per row: duplicates never share one

    def _nsfw(self, rows: list[ManifestRow]) -> None:
        if self.detector.name == "none":
            return
        for row, score in zip(rows, self.detector.scores([Path(str(r.local_path)) for r in rows]), strict=True):
            row.nsfw_score = round(float(score), 4)
            if score > self.options.nsfw_threshold:
                _reject(row, "nsfw", f"{row.path} scored {score:.2f} on the {self.detector.name} NSFW detector, "
                        f"over the {self.options.nsfw_threshold} threshold")

    def _exact_duplicates(self, rows: list[ManifestRow]) -> None:
        first: dict[str, ManifestRow] = {}
        for row in sorted(rows, key=_keep_first):
            original = first.setdefault(str(row.sha256), row)
            if original is not row:
                _drop_duplicate(row, original, "exact_duplicate", f"{row.path} is byte-for-byte identical to "
                                f"{original.path}")

    def _near_duplicate_images(self, rows: list[ManifestRow], distance: int) -> None:
        kept_hashes = np.zeros(len(rows), dtype=np.uint64)
        kept: list[ManifestRow] = []
        for row in sorted(rows, key=_keep_first):
            value = np.uint64(int(str(row.phash), 16))
            if kept:
                distances = np.bitwise_count(kept_hashes[: len(kept)] ^ value)
                nearest = int(np.argmin(distances))
                if distances[nearest] <= distance:
                    _drop_duplicate(row, kept[nearest], "near_duplicate", f"{row.path} looks the same as "
                                    f"{kept[nearest].path} (perceptual hash distance {int(distances[nearest])} <= "
                                    f"{distance})")
                    continue
            kept_hashes[len(kept)] = value
            kept.append(row)

    # ----------------------------------------------------------------------- texts

    def _text_checks(self, rows: list[ManifestRow]) -> None:
        """Every record of every text file (lora_tasks.intake.text_filter)."""
        from lora_tasks.intake.text_filter import RECORDS_DIR, TextRecordFilter

        # named as text but not UTF-8: the text check says so more usefully than "unknown type"
        named_text = [r for r in rows if r.type == "unknown" and claimed_type(r.path) == TEXT_TYPE]
        live = self._type_checks([r for r in rows if r not in named_text], {TEXT_TYPE, PARQUET_TYPE}) + named_text
        shutil.rmtree(self.out_dir / RECORDS_DIR, ignore_errors=True)  # a rerun writes them anew
        judge = TextRecordFilter(self.options, self.out_dir)
        self.records = judge.run([r for r in live if not r.reason])

    # --------------------------------------------------------------------- summary

    def _summary(self, rows: list[ManifestRow], kept: list[ManifestRow]) -> dict:
        """Counts that add up: kept + rejected = samples; archives and sidecar captions on their own lines."""
        samples = [r for r in rows if r.role == "sample"]
        archives = [r for r in rows if r.role == "archive"]
        sidecars = [r for r in rows if r.role == "sidecar"]
        records = ({"kept": sum(r.records or 0 for r in kept), "rejected": len(self.records),
                    "reasons": _reasons(self.records)} if self.task == "text" else None)
        return {
            "task": self.task,
            "records": records,
            "files": len(rows),
            "samples": len(samples),
            "kept": len(kept),
            "rejected": sum(bool(r.reason) for r in samples),
            "reasons": _reasons(samples),
            "archives": {"total": len(archives), "expanded": sum(not r.reason for r in archives),
                         "refused": sum(bool(r.reason) for r in archives), "reasons": _reasons(archives)},
            "sidecar_captions": {"total": len(sidecars), "used": sum(not r.reason for r in sidecars),
                                 "unusable": sum(bool(r.reason) for r in sidecars), "reasons": _reasons(sidecars)},
            "caption_fallbacks": sum(bool(r.caption_problem) for r in kept),
            "notes": dict(sorted(note_kinds(kept).items())),
            "antivirus": self.antivirus.name,
            "nsfw_detector": self.detector.name,
        }


def _reasons(rows: list[ManifestRow]) -> dict[str, int]:
    return dict(sorted(Counter(str(r.reason) for r in rows if r.reason).items()))


def _keep_first(row: ManifestRow) -> tuple[bool, int, str]:
    """Of duplicates, keep the lossless copy, then the one with most pixels, then the first by path."""
    return not row.lossless, -(row.width or 0) * (row.height or 0), row.path


def _drop_duplicate(row: ManifestRow, kept: ManifestRow, reason: str, sentence: str) -> None:
    """Reject a duplicate, naming the copy kept and why; a caption only the dropped copy had moves over."""
    if bool(row.lossless) != bool(kept.lossless):
        why = "it is lossless"
    elif (row.width or 0) * (row.height or 0) != (kept.width or 0) * (kept.height or 0):
        why = "it has more pixels"
    else:
        why = "it comes first by path"
    row.duplicate_of = kept.path
    _reject(row, reason, f"{sentence}; {kept.path} was kept ({why})")
    if row.caption and not kept.caption:
        kept.caption, kept.sidecar, kept.caption_problem = row.caption, row.sidecar, None
        kept.note(f"caption: taken from its duplicate {row.path}")


def _scan_problem(row: ManifestRow) -> str:
    detail = f" ({row.error_detail})" if row.error_detail else ""
    if row.role == "archive":
        return f"{row.path}: the archive was not expanded{detail}"
    if row.role == "sidecar":
        return f"{row.path}, a caption file, cannot be used{detail}; its image falls back to the captioner or its name"
    if str(row.error).startswith("archive_"):
        return f"{row.path}: {row.error_detail}"
    return {"unreadable": f"{row.path} cannot be read{detail}",
            "empty": f"{row.path} is an empty file (0 bytes). Fix: upload it again",
            "not_regular_file": f"{row.path} is not a regular file{detail}",
            "unsafe_name": f"{row.path} has a name that could escape its folder{detail}",
            "undecodable_name": f"{row.path} has a name that is not UTF-8{detail}",
            "header_unreadable": f"{row.path} looks like {describe(str(row.type))} but its header cannot be "
                                 f"read{detail}"}.get(str(row.error), f"{row.path}: {row.error}{detail}")


def filter_manifest(manifest: Path, out_dir: Path, options: FilterSection, task: str = "image",
                    workers: int = 0, antivirus: Antivirus | None = None,
                    detector: NsfwDetector | None = None, background: str = "white") -> FilterResult:
    """Filter ``manifest`` into ``out_dir`` (kept.jsonl, rejected.jsonl, summary.json, clean/)."""
    settings = platform_settings()
    rows = read_rows(manifest)
    refuse_writing_among((r.source for r in rows), out_dir, [CLEAN])
    shutil.rmtree(out_dir / CLEAN, ignore_errors=True)  # a rerun re-encodes from the source
    (out_dir / CLEAN).mkdir(parents=True, exist_ok=True)
    result = ManifestFilter(options, task, antivirus or antivirus_from(settings),
                            detector or nsfw_detector(options.nsfw_detector),
                            workers or settings.worker_count, out_dir, background).run(rows)
    write_rows(out_dir / "rejected.jsonl", result.rejected)
    write_rows(out_dir / "kept.jsonl", result.kept)
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(result.summary, indent=2, sort_keys=True))
    tmp.replace(out_dir / "summary.json")
    return result


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.intake.filter", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path, help="manifest.jsonl written by the scan stage")
    parser.add_argument("--out", type=Path, required=True, help="the filter stage's folder")
    parser.add_argument("--config", type=Path, help="job spec whose dataset.filter section to use")
    parser.add_argument("--task", choices=["image", "text"], help="default: the job spec's job.task, else image")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    spec = load_job_spec(args.config) if args.config else None
    options = spec.dataset.filter if spec else FilterSection()
    task = args.task or (spec.job.task if spec else "image")
    result = filter_manifest(args.manifest, args.out, options, task, args.workers,
                             background=spec.dataset.background if spec else "white")
    summary = result.summary
    print(f"kept {summary['kept']} of {summary['samples']} samples; rejected {summary['rejected']}")
    for reason, count in summary["reasons"].items():
        print(f"  {reason:<22} {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
