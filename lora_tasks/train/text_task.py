"""A text job's part of training: TRL-layout records in, a peft LoRA on a causal language model trained on
the next-token loss of the tokens the layout says to learn, written as a peft adapter folder (what
``PeftModel.from_pretrained``, vLLM and LoRAX load) and, when asked, as merged weights.

The dataset is a file or a folder of ``.txt``/``.jsonl``/``.parquet`` files, or the intake's manifest of
kept files. Every record is tokenized before the model loads, so bad data stops the run in seconds. An
example longer than ``training_config.max_length`` is truncated (and counted) or refused by
``dataset.filter.too_long``. Padded batches draw examples at random, as TRL does; packed ones draw rows
of several examples, each attending only to itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lora_tasks.errors import DatasetError, LoraTaskError
from lora_tasks.intake.holdout import holdout_count
from lora_tasks.intake.text_records import SUFFIXES, layout_of, read_records
from lora_tasks.spec.base_model import BaseModelRef
from lora_tasks.spec.causal_lm import check_max_length, resolve_text_targets
from lora_tasks.spec.schema import TEXT_SAMPLING, EvalSection, JobSpec
from lora_tasks.train.model_task import RunRecord
from lora_tasks.train.models import METHODS
from lora_tasks.train.outputs import MERGED_DIR
from lora_tasks.train.settings import RunSettings
from lora_tasks.train.text_examples import TextExample, pack, packed_batch, padded_batch, tokenize

log = logging.getLogger(__name__)

ONE_BUCKET = (0, 0)
"""Text batches are not grouped by shape: padding or packing makes any examples fit together."""


class TextTask:
    """A causal-LM LoRA through peft: the model is wrapped by ``get_peft_model`` and trains its adapters only."""

    effect_name = "token_loss"

    def __init__(self, spec: JobSpec, ref: BaseModelRef, dataset_dir: Path, output_dir: Path,
                 device: torch.device, settings: RunSettings) -> None:
        self.spec, self.ref, self.dataset_dir, self.output_dir = spec, ref, dataset_dir, output_dir
        self.device, self.settings = device, settings
        self.warnings: list[str] = []

    # ----------------------------------------------------------------------------- data

    def collect(self) -> None:
        self.files = dataset_files(self.dataset_dir)
        self.tokenizer = load_tokenizer(self.ref.location)
        self.max_length = max_length(self.spec, self.ref.location)
        records, self.layouts = read_dataset(self.files, self.tokenizer, self.ref.location)
        train, self.held_out = split_records(records, self.spec.eval)
        self.truncated = 0
        self.unlearnable = 0
        self.examples = [e for e in (self._fitted(r) for r in train) if e is not None]
        if not self.examples:
            raise DatasetError(f"no record of {self.dataset_dir} keeps a token to learn within the "
                               f"{self.max_length} tokens of training_config.max_length (the trained part of each "
                               "lies past the cut). Fix: raise max_length, or shorten the prompts")
        self.units: list[list[TextExample]] = (pack(self.examples, self.max_length) if self.spec.training.packing
                                               else [[e] for e in self.examples])
        self.buckets = [ONE_BUCKET] * len(self.units)
        self.repeats = [self.spec.dataset.repeats] * len(self.units)

    def _fitted(self, source: SourcedRecord) -> TextExample | None:
        """The record's tokens within max_length: truncated (and counted) or refused by dataset.filter.too_long;
        None, counted as unlearnable, when truncation leaves no trained token (its loss would be NaN)."""
        example = tokenized(source, self.tokenizer)
        size = len(example.input_ids)
        if size <= self.max_length:
            return example
        if self.spec.dataset.filter.too_long == "reject":
            raise DatasetError(f"{source.path} record {source.number} is {size} tokens, longer than the "
                               f"{self.max_length} of training_config.max_length. Fix: shorten or split it, raise "
                               "max_length (up to the model's context), or set dataset.filter.too_long: truncate")
        self.truncated += 1
        cut = truncated(example, self.max_length)
        if cut is None:
            self.unlearnable += 1
            log.warning("%s record %d: nothing it trains on is left within max_length %d; it is skipped",
                        source.path, source.number, self.max_length)
        return cut

    def data_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.files:
            stat = path.stat()
            digest.update(json.dumps([str(path), stat.st_size, stat.st_mtime_ns]).encode())
        return digest.hexdigest()

    # ---------------------------------------------------------------------------- model

    def prepare(self) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            self.ref.location, dtype=self.settings.weight_dtype, attn_implementation="sdpa",
            use_safetensors=None if self.ref.allow_pickle else True,
        )
        model.requires_grad_(False)
        names = [name for name, _ in model.named_modules()]
        self.target_modules = resolve_text_targets(self.spec.model.target_modules, names)  # hub ids are checked here
        lora = self.spec.model
        self.module = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=lora.lora_rank, lora_alpha=lora.alpha, lora_dropout=lora.lora_dropout,
            target_modules=self.target_modules, **METHODS[lora.method],
        ))
        for param in self.module.parameters():
            if param.requires_grad:
                param.data = param.data.float()
        self.module.to(self.device)
        if self.settings.gradient_checkpointing:
            self.module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.module.train()

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Token ids, labels and attention of these units, on the device; a packed mask in the model's dtype."""
        pad = self.tokenizer.pad_token_id
        if self.spec.training.packing:
            tensors = packed_batch([self.units[i] for i in indices], pad)
            tensors["attention_mask"] = tensors["attention_mask"].clamp(min=torch.finfo(self.settings.weight_dtype).min)
        else:
            tensors = padded_batch([self.units[i][0] for i in indices], pad)
        return {name: t.to(self.device, self.settings.weight_dtype) if t.is_floating_point() else t.to(self.device)
                for name, t in tensors.items()}

    def loss(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        return self.module(**self.batch(indices)).loss

    @torch.no_grad()
    def effect(self, seed: int, items: int) -> tuple[float, float]:
        """Mean next-token loss on the first training units without and with the adapter."""
        del seed  # no randomness in a language model's loss
        batches = [self.batch([i]) for i in range(min(items, len(self.units)))]

        def mean_loss() -> float:
            return sum(self.module(**b).loss.item() for b in batches) / len(batches)

        with self.module.disable_adapter():
            base = mean_loss()
        return base, mean_loss()

    def sample(self, step: int) -> list[str]:
        raise LoraTaskError(TEXT_SAMPLING)  # the spec refuses it first

    def facts(self) -> dict[str, Any]:
        tokens = sum(len(e.input_ids) for e in self.examples)
        return {"examples": len(self.examples), "held_out_examples": len(self.held_out), "files": self.layouts,
                "tokens": tokens,
                "trained_tokens": sum(e.trained_tokens for e in self.examples), "truncated": self.truncated,
                "unlearnable": self.unlearnable,
                "max_length": self.max_length, "packing": self.spec.training.packing, "rows": len(self.units)}

    # ---------------------------------------------------------------------------- export

    def write_weights(self, folder: Path, record: RunRecord) -> None:
        """peft's adapter folder exactly as ``save_pretrained`` writes it (its README gives way to our model
        card); with ``output.merged``, the merged model and tokenizer under ``merged/``, written last because
        merging consumes the adapter."""
        self.module.save_pretrained(str(folder), safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)
        if self.spec.output.merged:
            merged = self.module.merge_and_unload()
            merged.save_pretrained(str(folder / MERGED_DIR), safe_serialization=True)
            self.tokenizer.save_pretrained(str(folder / MERGED_DIR))


def load_tokenizer(location: str) -> Any:
    """The base model's tokenizer, padding with end-of-sequence where it has no pad token (as Llama's)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def max_length(spec: JobSpec, location: str) -> int:
    """training_config.max_length, or the model's context length; longer than the context is refused."""
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(location), "max_position_embeddings", None)
    check_max_length(spec.training.max_length, context)
    return spec.training.max_length or context or 2048


def tokenized(source: SourcedRecord, tokenizer: Any) -> TextExample:
    """The record's tokens and loss mask; a problem names the record's file and number."""
    try:
        return tokenize(source.record, tokenizer)
    except DatasetError as exc:
        raise DatasetError(f"{source.path} record {source.number}: {exc}") from None


def truncated(example: TextExample, limit: int) -> TextExample | None:
    """The first ``limit`` tokens, or None when no trained token with a token before it is left."""
    cut = TextExample(example.input_ids[:limit], example.loss_mask[:limit])
    return cut if any(cut.loss_mask[1:]) else None


@dataclass(frozen=True)
class SourcedRecord:
    """A record and where it came from, for messages that name the file and record."""

    path: Path
    number: int
    record: dict[str, Any]

    @property
    def key(self) -> str:
        """Identifies the record by content, so the held-out split survives renames and reordering."""
        return hashlib.sha256(json.dumps(self.record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read_dataset(files: list[Path], tokenizer: Any, model: str) -> tuple[list[SourcedRecord], dict[str, str]]:
    """Every record of the files, and each file's layout; conversations need the tokenizer's chat template."""
    records: list[SourcedRecord] = []
    layouts: dict[str, str] = {}
    for path in files:
        found = read_records(path)
        layouts[path.name] = layout_of(found[0])
        if tokenizer.chat_template is None and _is_chat(found[0]):
            raise DatasetError(f"{path} holds conversations, but the tokenizer of {model} has no chat template to "
                               "turn them into text. Fix: use a chat model's tokenizer, set tokenizer.chat_template "
                               "and save it, or write the data as 'text' records")
        records.extend(SourcedRecord(path, number, record) for number, record in enumerate(found, start=1))
    return records, layouts


def split_records(records: list[SourcedRecord], options: EvalSection) -> tuple[list[SourcedRecord],
                                                                                list[SourcedRecord]]:
    """(train, held out): ``eval.holdout_fraction`` of the records, those whose content hashes lowest, so the
    trainer and the evaluate stage pick the same ones on every retry (a text file holds many examples, so
    text is held out by record, not by file as images are)."""
    count = holdout_count(len(records), options)
    held = {r.key for r in sorted(records, key=lambda r: r.key)[:count]}
    return [r for r in records if r.key not in held], [r for r in records if r.key in held]


def dataset_files(root: Path) -> list[Path]:
    """The text files to train on: one file, a folder's (sorted), or those an intake manifest kept."""
    if root.is_file() and root.suffix == ".jsonl" and _is_intake_manifest(root):
        from lora_tasks.intake.manifest import read_rows

        rows = [r for r in read_rows(root) if r.role == "sample" and not r.reason and r.local_path]
        files = [Path(str(r.local_path)) for r in sorted(rows, key=lambda r: r.path)]
    elif root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    else:
        raise DatasetError(f"dataset {root} does not exist. Fix: set dataset.uri or --dataset to a text file or a "
                           f"folder of {', '.join(SUFFIXES)} files")
    if not files:
        raise DatasetError(f"dataset {root} holds no text files ({', '.join(SUFFIXES)}). Fix: add some, or point "
                           "dataset.uri at the right folder")
    return files


def _is_intake_manifest(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        first = f.readline()
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"path", "source", "role"} <= record.keys()


def _is_chat(record: dict[str, Any]) -> bool:
    return "messages" in record or not isinstance(record.get("prompt", ""), str)
