"""The version's ``README.md``: a Hugging Face model card, so that the hub, diffusers and people read it
the way they read every LoRA's card.

The front matter (``base_model``, ``tags``, ``instance_prompt``, ``license``, ``widget``) comes from
``huggingface_hub``'s ``ModelCardData``; the body is a Jinja template filled by ``ModelCard.from_template``
with the training and evaluation figures, the sample grid when there is one, and how to load the
adapter in diffusers, AUTOMATIC1111 WebUI / ComfyUI and peft. Nothing in it depends on the time of the
publish, so a retried publish writes the same card (and the same digest in the manifest).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from lora_tasks.spec.base_model import HUB_ID, PICKLE_SUFFIXES
from lora_tasks.spec.schema import JobSpec
from lora_tasks.stores.locations import parse_location
from lora_tasks.stores.versions import CARD_FILE, GRID_FILE, LOSS_CURVE_FILE
from lora_tasks.train.outputs import DIFFUSERS_FILE, EVAL_HEADLINE, PEFT_FILE, PROGRESS_FILE, SUMMARY_FILE

EVAL_FILE = "eval_report.json"
SPEC_FILE = "job.yaml"
SAMPLES_DIR = "samples"
TAGS = ["lora", "diffusers", "text-to-image", "stable-diffusion", "stable-diffusion-diffusers"]
FIGURES = '''## Training

| figure | value |
|---|---|
{% for label, value in training %}| {{ label }} | {{ value }} |
{% endfor %}
{%- if loss_curve %}
![Training loss]({{ loss_curve }})
{% endif %}
{%- if progress %}
![Samples during training, a row per step]({{ progress }})
{% endif %}
{%- if evaluation %}
## Evaluation

{{ eval_note }}

| figure | value |
|---|---|
{% for label, value in evaluation %}| {{ label }} | {{ value }} |
{% endfor %}'''
"""The training and evaluation tables, in every card (the text card adds its generations)."""
FILES = '''## Files

{% for file, what in files %}- `{{ file }}`: {{ what }}
{% endfor %}- `manifest.json`: the sha256 and size of every file, written last (a version without it is incomplete)
'''
TEMPLATE = '''---
{{ card_data }}
---

# {{ name }} v{{ version }}

A LoRA{% if method != "lora" %} ({{ method }}){% endif %} for `{{ base_model }}`, trained by tenant `{{ tenant }}`.
{%- if trigger_word %} Put the trigger word **`{{ trigger_word }}`** in the prompt.{% endif %}
{% if grid %}
![Samples]({{ grid }})
{% endif %}
''' + FIGURES + '''
{%- for note in notes %}
- {{ note }}
{%- endfor %}
{% endif %}
{%- if download %}
## Download

`{{ download }}`
{% endif %}
{%- if diffusers %}
## Use with diffusers

```python
from diffusers import StableDiffusionPipeline

pipe = {{ load_base }}
pipe.load_lora_weights("{{ folder }}", weight_name="{{ diffusers }}")
image = pipe("{{ prompt }}").images[0]
```
{% endif %}
{%- if kohya %}
## Use with AUTOMATIC1111 WebUI or ComfyUI

Copy `{{ kohya }}` into the WebUI's `models/Lora` folder and write `<lora:{{ kohya_name }}:1>` in the prompt
(the number is the strength); in ComfyUI, copy it into `models/loras` and pick it in a *Load LoRA* node.
{% endif %}
{%- if peft %}
## Use with peft

```python
{% if not diffusers %}from diffusers import StableDiffusionPipeline
{% endif %}from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import load_file
{% if not diffusers %}
pipe = {{ load_base }}{% endif %}
config = LoraConfig.from_pretrained("{{ folder }}")
pipe.unet = inject_adapter_in_model(config, pipe.unet)
set_peft_model_state_dict(pipe.unet, load_file("{{ folder }}/{{ peft }}"))
```
{% endif %}
''' + FILES


def model_card(spec: JobSpec, *, version: int, uri: str, summary: dict[str, Any], report: dict[str, Any],
               files: Collection[str]) -> ModelCard:
    """The card of version ``version`` at ``uri``, whose files (paths in the version) are ``files``."""
    if spec.job.task == "text":
        from lora_tasks.publish.text_card import text_model_card

        return text_model_card(spec, version=version, uri=uri, summary=summary, report=report, files=files)
    name, trigger = spec.job.name, spec.dataset.trigger_word
    prompt = sample_prompt(report, trigger or name)
    grid = GRID_FILE if GRID_FILE in files else None
    kohya = f"{name}.safetensors" if f"{name}.safetensors" in files else None
    download, folder = version_folder(uri, name, version)
    data = ModelCardData(
        base_model=base_model_id(spec, summary), license=spec.output.license, library_name="diffusers",
        pipeline_tag="text-to-image", tags=[*TAGS, *([spec.model.method] if spec.model.method != "lora" else [])],
        instance_prompt=trigger, widget=[{"text": prompt, "output": {"url": grid}}] if grid else None,
    )
    return ModelCard.from_template(
        data, template_str=TEMPLATE, name=name, version=version, tenant=spec.job.tenant, method=spec.model.method,
        base_model=base_model_id(spec, summary), trigger_word=trigger, prompt=prompt, grid=grid,
        loss_curve=LOSS_CURVE_FILE if LOSS_CURVE_FILE in files else None,
        progress=PROGRESS_FILE if PROGRESS_FILE in files else None,
        training=training_rows(spec, summary), evaluation=eval_rows(report), eval_note=eval_note(report),
        notes=report.get("notes") or [],
        diffusers=DIFFUSERS_FILE if DIFFUSERS_FILE in files else None, kohya=kohya,
        kohya_name=name, peft=PEFT_FILE if PEFT_FILE in files else None,
        download=download, folder=folder, load_base=load_base(spec, summary), files=describe_files(files, kohya),
    )


def base_model_id(spec: JobSpec, summary: dict[str, Any]) -> str:
    """A hub id as it is; a local model by its folder or file name (the platform's paths mean nothing to
    a reader, and should not be shown to one)."""
    base = summary.get("base_model") or {}
    location = base.get("location") or spec.model.base_model
    if base.get("kind") == "hub" or (not base and HUB_ID.match(location) and not location.startswith(".")
                                     and PurePosixPath(location).suffix not in {".safetensors", *PICKLE_SUFFIXES}):
        return location
    return PurePosixPath(location).name


def load_base(spec: JobSpec, summary: dict[str, Any]) -> str:
    base = summary.get("base_model") or {}
    location = base.get("location") or spec.model.base_model
    single = base.get("kind") == "single_file" or (not base and PurePosixPath(location).suffix in
                                                    {".safetensors", *PICKLE_SUFFIXES})
    return f'StableDiffusionPipeline.{"from_single_file" if single else "from_pretrained"}("{location}")'


def version_folder(uri: str, name: str, version: int) -> tuple[str | None, str]:
    """(how to download the version first, or None for a local one; the folder to load it from)."""
    if uri.startswith("s3://"):
        local = f"{name}-v{version}"
        return f"aws s3 cp --recursive {uri} {local}", local
    return None, parse_location(uri, "version").path


def _sampling_row(facts: dict[str, Any] | None) -> str | None:
    if not facts or not facts["images"]:
        return None
    return (f"{facts['images']} images at {len(facts['steps'])} steps, {facts['seconds_per_image']:.2f} s an image "
            "(not in the step time)")


def training_rows(spec: JobSpec, summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures of the run (the summary's, which resolved 'auto' settings) and of its spec."""
    lora, settings, loss = summary.get("lora", {}), summary.get("settings", {}), summary.get("train_loss", {})
    training = spec.training
    text = spec.job.task == "text"
    rows: list[tuple[str, Any]] = [
        ("steps", summary.get("steps")), ("epochs", summary.get("epochs")), ("images", summary.get("images")),
        ("examples", summary.get("examples")), ("tokens trained on", summary.get("trained_tokens")),
        ("examples truncated", summary.get("truncated") or None),
        ("rank", lora.get("rank", spec.model.lora_rank)), ("alpha", lora.get("alpha", spec.model.alpha)),
        ("target modules", ", ".join(lora.get("target_modules", spec.model.target_modules))),
        ("trainable parameters", f"{lora['parameters']:,} ({lora['share']:.4%} of the base model's "
                                 f"{lora['model_parameters']:,})" if "parameters" in lora else None),
        ("learning rate", f"{training.learning_rate:g} ({training.lr_scheduler})"),
        ("batch size", settings.get("batch_size", training.batch_size)),
        ("gradient accumulation", training.gradient_accumulation_steps),
        ("max length", f"{summary.get('max_length')} tokens{', packed' if summary.get('packing') else ''}")
        if text else ("resolution", f"{training.resolution} px"), ("precision", settings.get("precision")),
        ("device", settings.get("device")),
        ("train loss, first -> last tenth", f"{number(loss['first'])} -> {number(loss['last'])}" if loss else None),
        ("median step", f"{summary['median_step_seconds']:.3f} s" if summary.get("median_step_seconds") else None),
        ("samples during training", _sampling_row(summary.get("training_samples"))),
        ("training time", f"{training_seconds(summary):.0f} s" if "finished_at" in summary else None),
        ("peak memory", f"{summary['peak_memory_bytes'] / 2**20:.0f} MiB" if summary.get("peak_memory_bytes")
         else None),
    ]
    return [(label, number(value)) for label, value in rows if value is not None]


def training_seconds(summary: dict[str, Any]) -> float:
    started, finished = (datetime.fromisoformat(summary[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def eval_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    clip, sampling = report.get("clip_score") or {}, report.get("sampling") or {}
    samples = report.get("samples") or []
    rows: list[tuple[str, Any]] = [
        ("images", report.get("images")), ("held out of training", report.get("held_out")),
        ("images the losses are measured on", report.get("compared_images")
         if report.get("compared_images") != report.get("images") else None),
        ("denoising loss, base model", report.get("base_loss")),
        ("denoising loss, with the LoRA", report.get("lora_loss")),
        ("loss ratio (below 1: better)", report.get("loss_ratio")),
        ("gate: loss ratio at most", report.get("max_loss_ratio")),
        ("CLIP score, base model", clip.get("base")), ("CLIP score, with the LoRA", clip.get("lora")),
        ("gate: CLIP score at least", report.get("min_clip_score")),
        ("CLIP model", report.get("clip_model") if clip else None),
        ("samples", f"{len(samples)} prompt(s), {sampling['steps']} steps, guidance {sampling['guidance']}, "
                    f"{sampling['size']} px, {sampling['scheduler']}, seed {sampling['seed']}"
         if samples and sampling else None),
        ("passed every gate", report.get("passed")),
    ]
    return [(label, number(value)) for label, value in rows if value is not None]


def eval_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The evaluation's headline numbers, for the registry."""
    clip = report.get("clip_score") or {}
    found = {key: report.get(key) for key in EVAL_HEADLINE}
    return {f"eval_{k}": v for k, v in (found | {"clip_base": clip.get("base"), "clip_lora": clip.get("lora")}).items()
            if v is not None}


def sample_prompt(report: dict[str, Any], fallback: str) -> str:
    """A prompt the adapter was shown with: the first sample's with the trigger word, if any."""
    samples = report.get("samples") or []
    chosen = next((s for s in samples if s.get("with_trigger")), samples[0] if samples else None)
    return str(chosen["prompt"]) if chosen else fallback


def eval_note(report: dict[str, Any]) -> str:
    if report.get("held_out") is False:
        return "Measured on training images (too few to hold any out): these figures flatter the adapter."
    return "Measured on images held out of training, with the same noise with and without the adapter."


def number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_files(files: Collection[str], kohya: str | None) -> list[tuple[str, str]]:
    what = {DIFFUSERS_FILE: "diffusers weights (`pipe.load_lora_weights`)",
            PEFT_FILE: "peft weights", "adapter_config.json": "peft's adapter config",
            SUMMARY_FILE: "the training run's figures", EVAL_FILE: "the evaluation's figures",
            SPEC_FILE: "the job spec, every default filled in", CARD_FILE: "this card",
            GRID_FILE: "samples of the base model and of the LoRA, side by side",
            LOSS_CURVE_FILE: "the training loss by step",
            PROGRESS_FILE: "samples made during training, a row per step (training_config.sample_every_n_steps)"}
    if kohya:
        what[kohya] = "kohya weights for AUTOMATIC1111 WebUI and ComfyUI (training metadata in its header)"
    listed = [(f, what.get(f, "")) for f in sorted(files) if not f.startswith(f"{SAMPLES_DIR}/")]
    samples = sum(f.startswith(f"{SAMPLES_DIR}/") for f in files)
    if samples:
        listed.append((f"{SAMPLES_DIR}/", f"{samples} sample image(s)"))
    return [(f, w or "a file of the version") for f, w in listed]
