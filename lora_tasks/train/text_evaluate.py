"""Measure a text LoRA on records it never saw, show what it writes, and gate publishing on the result.

The held-out records are the ones the trainer left out (:func:`~lora_tasks.train.text_task.split_records`
hashes their content). The adapter is loaded the way users load it, ``PeftModel.from_pretrained`` on the
exported folder. Figures, in ``eval_report.json``: the next-token loss and perplexity of the held-out
tokens the layout trains on, without and with the adapter; greedy generations for the eval prompts (or the
held-out records' prompts), base and adapter side by side, so reruns give the same text; the training loss
curve. A loss ratio above ``eval.max_loss_ratio`` fails the stage with the figures in the message.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from lora_tasks.errors import DatasetError
from lora_tasks.spec.base_model import locate_base_model
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.text_examples import TextExample, padded_batch
from lora_tasks.train.text_task import (
    SourcedRecord,
    dataset_files,
    load_tokenizer,
    max_length,
    read_dataset,
    tokenized,
    truncated,
)
from lora_tasks.train.text_task import split_records as split

log = logging.getLogger(__name__)

PROMPT_WORDS = 8
"""A plain-text record's prompt: its first words."""


def evaluate_text_adapter(spec: JobSpec, adapter_dir: Path, dataset: Path, out_dir: Path, device: str | None,
                          metrics: Path) -> dict[str, Any]:
    """Write ``eval_report.json`` (and the loss curve) into ``out_dir`` and return the report; the caller
    applies the gate."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lora_tasks.train.evaluate import REPORT_FILE, Laps, loss_curve

    timings, notes = Laps(), []
    ref = locate_base_model(spec)
    tokenizer = load_tokenizer(ref.location)
    records, _ = read_dataset(dataset_files(dataset), tokenizer, ref.location)
    _, held = split(records, spec.eval)
    held_out = bool(held)
    if not held_out:
        notes.append("too few records to hold some out: the losses are on training records, which flatters the "
                     "adapter")
        held = records
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base = AutoModelForCausalLM.from_pretrained(ref.location, dtype=torch.float32, use_safetensors=None
                                                if ref.allow_pickle else True).to(target)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    limit = max_length(spec, ref.location)
    examples = [e for e in (truncated(tokenized(r, tokenizer), limit) for r in held) if e is not None]
    if not examples:
        raise DatasetError(f"no held-out record of {dataset} keeps a token to score within training_config."
                           f"max_length ({limit}). Fix: raise max_length, or shorten the prompts")
    timings.lap("load_s")
    compared = examples[:spec.eval.max_compare_items]  # the comparison's cost is bounded by the setting
    with model.disable_adapter():
        base_loss = token_loss(model, compared, tokenizer.pad_token_id, target)
    lora_loss = token_loss(model, compared, tokenizer.pad_token_id, target)
    log.info("adapter against the base model on %d of %d held-out records (eval.max_compare_items): %.1f s",
             len(compared), len(examples), timings.lap("loss_s"))
    prompts = _prompts(spec, held, tokenizer)
    generations = _generate(model, tokenizer, prompts, spec.eval.max_new_tokens, target)
    timings.lap("generate_s")
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = loss_curve(metrics, out_dir, notes)
    ratio = lora_loss / base_loss
    gates = {"max_loss_ratio": {"value": ratio, "limit": spec.eval.max_loss_ratio,
                                "passed": ratio <= spec.eval.max_loss_ratio}}
    timings["total_s"] = round(sum(timings.values()), 3)
    report = {
        "task": "text", "examples": len(examples), "compared_examples": len(compared), "held_out": held_out,
        "tokens": sum(_predicted(e) for e in compared),
        "base_loss": base_loss, "lora_loss": lora_loss, "loss_ratio": ratio,
        "base_perplexity": math.exp(base_loss), "lora_perplexity": math.exp(lora_loss),
        "max_loss_ratio": spec.eval.max_loss_ratio, "generations": generations,
        "generation": {"decoding": "greedy", "max_new_tokens": spec.eval.max_new_tokens},
        "samples": [], "sample_grid": None, "loss_curve": curve,
        "gates": gates, "timings": dict(timings), "notes": notes, "passed": gates["max_loss_ratio"]["passed"],
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
    return report


def token_loss(model: Any, examples: list[TextExample], pad_id: int, device: Any) -> float:
    """Mean next-token loss over every trained token of the examples (each token weighs the same)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            batch = {k: v.to(device) for k, v in padded_batch([example], pad_id).items()}
            predicted = _predicted(example)
            if predicted:
                total += model(**batch).loss.item() * predicted
                count += predicted
    return total / max(count, 1)


def _predicted(example: TextExample) -> int:
    """Trained tokens that have a token before them (the first one has nothing to be predicted from)."""
    return sum(example.loss_mask[1:])


def _prompts(spec: JobSpec, held: list[SourcedRecord], tokenizer: Any) -> list[tuple[str, bool]]:
    """What each generation continues, and whether the tokenizer adds its special tokens (a rendered chat
    template holds them already): eval.prompts (as a user turn where there is a chat template), else the
    held-out records' prompts, at most eval.max_prompts."""
    if spec.eval.prompts:
        if tokenizer.chat_template is None:
            return [(p, True) for p in spec.eval.prompts]
        return [(_chat([{"role": "user", "content": p}], tokenizer), False) for p in spec.eval.prompts]
    return [_record_prompt(r.record, tokenizer) for r in held[:spec.eval.max_prompts]]


def _record_prompt(record: dict[str, Any], tokenizer: Any) -> tuple[str, bool]:
    if "messages" in record:
        turns = record["messages"]
        last = max(i for i, m in enumerate(turns) if m["role"] == "assistant")
        return _chat(turns[:last], tokenizer), False
    if "prompt" in record:
        prompt = record["prompt"]
        return (prompt, True) if isinstance(prompt, str) else (_chat(prompt, tokenizer), False)
    return " ".join(record["text"].split()[:PROMPT_WORDS]), True


def _chat(turns: list[dict[str, str]], tokenizer: Any) -> str:
    return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)


def _generate(model: Any, tokenizer: Any, prompts: list[tuple[str, bool]], max_new_tokens: int,
              device: Any) -> list[dict[str, str]]:
    """Greedy continuations without and with the adapter, side by side."""
    import torch

    def continuation(ids: torch.Tensor) -> str:
        generated = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)

    rows = []
    for prompt, special in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=special).input_ids.to(device)
        with torch.no_grad():
            with model.disable_adapter():
                base = continuation(ids)
            rows.append({"prompt": prompt, "base": base, "lora": continuation(ids)})
    return rows


def gate_message(report: dict[str, Any]) -> str:
    return (f"the adapter's held-out perplexity is {report['lora_perplexity']:.2f} (base model "
            f"{report['base_perplexity']:.2f}): next-token loss x{report['loss_ratio']:.3f}, over the gate "
            f"eval.max_loss_ratio x{report['max_loss_ratio']}; it is not published. Fix: train fewer steps or with "
            "a lower learning rate, add examples, or relax eval.max_loss_ratio")
