"""The filter stage for text datasets, record by record: one ``.jsonl`` or ``.parquet`` file holds many
training examples, and one bad example must not cost the rest of its file.

A file is refused whole when it is not UTF-8 or not in one of TRL's layouts (named with its line and
the fix, as the trainer would). Each record is then judged, first problem wins: no words, longer than
``dataset.filter.max_text_chars``, an exact copy of an earlier record (same fields), or a near copy
(word-shingle MinHash similarity at least ``text_near_duplicate_similarity``). Rejected records are
listed in ``rejected.jsonl`` as ``<file>#<record>``; a file keeping every record is passed on as it is,
one keeping some has them written to ``records/<file>.jsonl`` in the stage's folder (the upload is never
touched), and one keeping none is rejected with its records' reason. A file of one record is named
without a record number, so a folder of documents reads as before.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from lora_tasks.errors import DatasetError
from lora_tasks.intake.manifest import ManifestRow
from lora_tasks.intake.text_records import read_records
from lora_tasks.spec.schema import FilterSection

RECORDS_DIR = "records"
SHINGLE_WORDS = 5
MINHASH_PERMUTATIONS = 64
MINHASH_SCHEME = "affine32"


def record_text(record: dict[str, Any]) -> str:
    """The words a record trains on or conditions on: what emptiness, length and similarity are judged by."""
    if "messages" in record:
        return "\n".join(m["content"] for m in record["messages"])
    if "prompt" in record:
        parts = [record["prompt"], record["completion"]]
        return "\n".join(p if isinstance(p, str) else "\n".join(m["content"] for m in p) for p in parts)
    return record["text"]


def minhash(text: str) -> Any:
    from datasketch import LeanMinHash, MinHash

    words = text.split()
    signature = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=1, scheme=MINHASH_SCHEME)
    shingles = {" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(1, len(words) - SHINGLE_WORDS + 1))}
    signature.update_batch([s.encode() for s in shingles])
    return LeanMinHash(signature)


class TextRecordFilter:
    """Judges every record of the live text files, in path order, against those kept before it."""

    def __init__(self, options: FilterSection, out_dir: Path) -> None:
        from datasketch import MinHashLSH

        self.options, self.out_dir = options, out_dir
        similarity = options.text_near_duplicate_similarity
        self.index = MinHashLSH(threshold=similarity, num_perm=MINHASH_PERMUTATIONS) if similarity else None
        self.seen: dict[str, str] = {}
        """Canonical record hash -> the name of the record kept with it."""
        self.rejected: list[ManifestRow] = []
        self.kept_records = 0

    def run(self, rows: list[ManifestRow]) -> list[ManifestRow]:
        """Judge the files' records; returns the rejected records (rejected files get their reason)."""
        for row in sorted(rows, key=lambda r: r.path):
            self._file(row)
        return self.rejected

    def _file(self, row: ManifestRow) -> None:
        path = Path(str(row.local_path))
        if row.type != "parquet":
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                row.reason, row.message = "not_utf8", f"{row.path} is not UTF-8 text (byte {exc.start} is not " \
                                                      "UTF-8). Fix: save it as UTF-8"
                return
        try:
            records = read_records(path, row.path)
        except DatasetError as exc:
            empty = "holds no records" in str(exc)
            row.reason = "empty" if empty else "malformed"
            row.message = f"{row.path} holds no words" if empty else str(exc).replace(str(path), row.path)
            return
        single = len(records) == 1
        kept, verdicts = [], []
        for number, record in enumerate(records, start=1):
            name = row.path if single else f"{row.path}#{number}"
            verdict = self._judge(record, name)
            if verdict is None:
                kept.append(record)
            else:
                verdicts.append(verdict)
                self.rejected.append(ManifestRow(path=name, source=row.source if single else f"{row.source}#{number}",
                                                 size=len(json.dumps(record)), type="text", role="sample",
                                                 reason=verdict[0], message=verdict[1], duplicate_of=verdict[2]))
        if not kept:
            if single:
                self.rejected.pop()
            reasons = Counter(v[0] for v in verdicts)
            row.reason = reasons.most_common(1)[0][0] if len(reasons) == 1 else "no_records"
            row.message = verdicts[0][1] if single else f"{row.path}: none of its {len(records)} records was kept " \
                f"({', '.join(f'{n} {r}' for r, n in sorted(reasons.items()))}; see rejected.jsonl)"
            row.duplicate_of = verdicts[0][2] if single else None
            return
        row.records = len(kept)
        self.kept_records += len(kept)
        if len(kept) < len(records):
            row.note(f"records: {len(records) - len(kept)} of {len(records)} rejected (see rejected.jsonl)")
        if len(kept) < len(records) or path.suffix != PurePosixPath(row.path).suffix:
            row.local_path = str(self._write(row.path, kept))  # (an archive member is extracted under a number)

    def _judge(self, record: dict[str, Any], name: str) -> tuple[str, str, str | None] | None:
        """(reason, sentence, duplicate_of) of a rejected record; None for a kept one (then remembered)."""
        text = record_text(record)
        if not text.split():
            return "empty", f"{name} holds no words", None
        if len(text) > self.options.max_text_chars:
            return "too_long", f"{name} is {len(text)} characters, over {self.options.max_text_chars}", None
        key = hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        if key in self.seen:
            first = self.seen[key]
            return "exact_duplicate", f"{name} is a copy of {first}; {first} was kept (it comes first by path)", first
        signature = minhash(text) if self.index is not None else None
        if signature is not None:
            matches = sorted(self.index.query(signature))
            if matches:
                similarity = self.options.text_near_duplicate_similarity
                return ("near_duplicate", f"{name} repeats most of {matches[0]} (word-shingle similarity about "
                        f"{similarity} or more); {matches[0]} was kept (it comes first by path)", matches[0])
            self.index.insert(name, signature)
        self.seen[key] = name
        return None

    def _write(self, name: str, records: list[dict[str, Any]]) -> Path:
        target = self.out_dir / RECORDS_DIR / f"{name}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        partial.replace(target)
        return target
