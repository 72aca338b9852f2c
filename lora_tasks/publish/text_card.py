"""A text LoRA's ``README.md``: the Hugging Face model card of a peft adapter (``library_name: peft``,
``pipeline_tag: text-generation``), with the training and evaluation figures, base and adapter generations
side by side, and how to load it in peft, transformers (merged), vLLM and LoRAX."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from lora_tasks.publish.card import (
    FIGURES,
    FILES,
    LOSS_CURVE_FILE,
    base_model_id,
    describe_files,
    number,
    training_rows,
    version_folder,
)
from lora_tasks.spec.schema import JobSpec
from lora_tasks.train.outputs import MERGED_DIR

TAGS = ["lora", "peft", "text-generation", "transformers"]
TEMPLATE = '''---
{{ card_data }}
---

# {{ name }} v{{ version }}

A LoRA{% if method != "lora" %} ({{ method }}){% endif %} for the language model `{{ base_model }}`, trained by
tenant `{{ tenant }}`.

''' + FIGURES + '''
{%- if generations %}
Greedy generations for the same prompts, without and with the adapter:

| prompt | base model | with the LoRA |
|---|---|---|
{% for row in generations %}| {{ row.prompt }} | {{ row.base }} | {{ row.lora }} |
{% endfor %}
{%- endif %}
{%- for note in notes %}
- {{ note }}
{%- endfor %}
{% endif %}
{%- if download %}
## Download

`{{ download }}`
{% endif %}
## Use with peft

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{{ base_model }}")
model = PeftModel.from_pretrained(base, "{{ folder }}")
tokenizer = AutoTokenizer.from_pretrained("{{ base_model }}")
```
{% if merged %}
## Use the merged weights

`{{ merged }}/` is the base model with the adapter merged in, for tools that cannot load an adapter:
`AutoModelForCausalLM.from_pretrained("{{ folder }}/{{ merged }}")`.
{% endif %}
## Serve with vLLM or LoRAX

The folder is peft's adapter format, which both load as a LoRA adapter:
`vllm serve {{ base_model }} --enable-lora --lora-modules {{ name }}={{ folder }}`, or in LoRAX pass
`"adapter_id": "{{ folder }}", "adapter_source": "local"` with the request.

''' + FILES


def text_model_card(spec: JobSpec, *, version: int, uri: str, summary: dict[str, Any], report: dict[str, Any],
                    files: Collection[str]) -> ModelCard:
    name = spec.job.name
    download, folder = version_folder(uri, name, version)
    base = base_model_id(spec, summary)
    data = ModelCardData(base_model=base, license=spec.output.license, library_name="peft",
                         pipeline_tag="text-generation",
                         tags=[*TAGS, *([spec.model.method] if spec.model.method != "lora" else [])])
    merged = MERGED_DIR if any(f.startswith(f"{MERGED_DIR}/") for f in files) else None
    return ModelCard.from_template(
        data, template_str=TEMPLATE, name=name, version=version, tenant=spec.job.tenant, method=spec.model.method,
        base_model=base, training=training_rows(spec, summary), evaluation=text_eval_rows(report),
        eval_note=_eval_note(report), generations=[_cells(g) for g in report.get("generations") or []],
        notes=report.get("notes") or [], loss_curve=LOSS_CURVE_FILE if LOSS_CURVE_FILE in files else None,
        download=download, folder=folder, merged=merged,
        files=[(f, w) for f, w in describe_files([f for f in files if not f.startswith(f"{MERGED_DIR}/")], None)]
        + ([(f"{MERGED_DIR}/", "the base model with the adapter merged in")] if merged else []),
    )


def text_eval_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, Any]] = [
        ("examples", report.get("examples")), ("held out of training", report.get("held_out")),
        ("tokens scored", report.get("tokens")),
        ("perplexity, base model", report.get("base_perplexity")),
        ("perplexity, with the LoRA", report.get("lora_perplexity")),
        ("next-token loss ratio (below 1: better)", report.get("loss_ratio")),
        ("gate: loss ratio at most", report.get("max_loss_ratio")),
        ("passed every gate", report.get("passed")),
    ]
    return [(label, number(value)) for label, value in rows if value is not None]


def _eval_note(report: dict[str, Any]) -> str:
    if report.get("held_out") is False:
        return "Measured on training records (too few to hold any out): these figures flatter the adapter."
    return "Measured on records held out of training, on the tokens the layout trains on."


def _cells(row: dict[str, str]) -> dict[str, str]:
    """A generation as table cells: one line each, pipes escaped."""
    return {k: " ".join(str(v).split()).replace("|", "\\|") or "(nothing)" for k, v in row.items()}
