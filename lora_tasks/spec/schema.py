"""The job spec: the short YAML a user writes, parsed into typed, self-documenting models.

The seed format (``model_config`` + ``training_config``) loads unchanged; every other key
has a default. Schema errors are collected and rephrased so each names the key, the bad
value and the fix. Checks that need the base model on disk (does it exist, which layers
does it have) live in :mod:`lora_tasks.spec.base_model`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from lora_tasks.colours import parse_background

Auto = Literal["auto"]
IMAGE_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "v_proj"]
IMAGE_FORMATS = ["diffusers", "kohya"]
TEXT_FORMATS = ["peft"]
KOHYA_DORA = ("AUTOMATIC1111 and ComfyUI read a kohya-format DoRA as LyCORIS writes it, a dora_scale per input "
              "column of each layer (ComfyUI also takes one per output row, but divides it by the base weight's norm "
              "rather than the adapted weight's), while peft trains a magnitude per output row of the adapted "
              "weight: a dora_scale could match it only on the exact base checkpoint it was trained on, not on the "
              "fine-tunes and merges WebUI users load LoRAs onto")
"""Why a DoRA is not written in the kohya format (tests/lora_tasks/train/test_dora_formats.py restates the tools'
arithmetic, the per-row scale that matches the training base included)."""
TEXT_SAMPLING = ("training_config.sample_every_n_steps: text jobs are not sampled during training (the evaluate "
                 "stage writes greedy generations); remove sample_every_n_steps")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Tenant and job names become path and object-store prefixes: no '/', no leading dot."""


def _refuse_bool(value: Any) -> Any:
    """YAML turns yes/no/true into booleans; a boolean is never a valid number here."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


def _multiple_of_8(value: int) -> int:
    if value % 8:
        raise ValueError(f"must be a multiple of 8, got {value} (try {max(8, round(value / 8) * 8)})")
    return value


Int = Annotated[int, BeforeValidator(_refuse_bool)]
Float = Annotated[float, BeforeValidator(_refuse_bool)]
PositiveInt = Annotated[Int, Field(ge=1)]
PositiveFloat = Annotated[Float, Field(gt=0.0)]
Pixels = Annotated[Int, AfterValidator(_multiple_of_8)]


def _safe_name(value: Any) -> Any:
    if isinstance(value, str) and ".." in value:
        raise ValueError("'..' is not allowed in a name: it could escape its storage prefix")
    return value


Name = Annotated[str, BeforeValidator(_safe_name), Field(pattern=NAME_PATTERN)]


def _colour(value: str) -> str:
    parse_background(value)
    return value


Colour = Annotated[str, AfterValidator(_colour)]


class SpecModel(BaseModel):
    """Strict about keys (typos must not be ignored), lenient about YAML's scalar types."""

    model_config = ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=False, frozen=True)


class JobSection(SpecModel):
    name: Name = Field("lora", description="job name: letters, digits, '.', '_' or '-'")
    tenant: Name = Field("default", description="tenant id: letters, digits, '.', '_' or '-'")
    task: Literal["image", "text"] = Field(
        "image", description="'image' (a LoRA on a Stable Diffusion UNet) or 'text' (a LoRA on a causal language "
        "model, Llama-family)"
    )
    priority: Literal["interactive", "standard", "batch"] = Field(
        "standard", description="'interactive', 'standard' or 'batch' (batch waits for off-peak hours)"
    )
    gpu_type: str = Field("auto", description="a GPU type name from the GPU table, or 'auto'")
    deadline: datetime | None = Field(None, description="when the adapter must be ready (ISO 8601, with a zone)")


class FilterSection(SpecModel):
    min_side: Int = Field(256, ge=1, description="shortest accepted image side in pixels, >= 1")
    max_side: Int = Field(8192, ge=1, description="longest accepted image side in pixels")
    max_pixels: Int = Field(
        50_000_000, ge=1, description="width x height above which an image is refused undecoded (bombs)"
    )
    near_duplicate_distance: Int | None = Field(
        4, ge=0, le=32, description="perceptual-hash bits two images may differ by and still be duplicates; "
        "null turns near-duplicate detection off"
    )
    nsfw_detector: Literal["none", "nudenet"] = Field("none", description="'none' or 'nudenet' (optional extra)")
    nsfw_threshold: Float = Field(0.8, gt=0.0, le=1.0, description="NSFW score above which an image is refused")
    max_text_chars: Int = Field(200_000, ge=1, description="longest accepted text sample, in characters")
    text_near_duplicate_similarity: Float | None = Field(
        0.9, gt=0.0, le=1.0, description="word-shingle Jaccard similarity at which texts are duplicates, or null"
    )
    too_long: Literal["truncate", "reject"] = Field(
        "truncate", description="text jobs: an example longer than training_config.max_length is 'truncate'd (and "
        "counted in the summary) or stops the run naming its file and line ('reject')"
    )
    trailing_data: Literal["reject", "reencode"] = Field(
        "reject", description="an image with data after its end (an appended archive, a polyglot): 'reject' it, "
        "or 'reencode' its pixels into a clean PNG; never passed on as it is"
    )


class CaptionSection(SpecModel):
    model: str | None = Field(
        None, description="BLIP captioning model (folder or hub id) for images without a sidecar caption"
    )
    max_new_tokens: Int = Field(30, ge=1, le=256, description="longest generated caption, in tokens")
    batch_size: Int = Field(8, ge=1, le=256, description="images captioned per forward pass")


class ChecksSection(SpecModel):
    min_images: Int = Field(5, ge=1, description="fewest kept samples worth training on")
    min_caption_coverage: Float = Field(
        0.5, ge=0.0, le=1.0,
        description="share of kept samples that must have a caption of their own (a sidecar file or the "
                    "auto-captioner's; words from the file name do not count)"
    )
    min_side: Int = Field(256, ge=1, description="shortest image side every kept image must have")
    max_duplicate_share: Float = Field(0.5, ge=0.0, le=1.0, description="largest share of duplicates in the upload")
    max_rejected_share: Float = Field(0.5, ge=0.0, le=1.0, description="largest share of rejected samples")


class DatasetSection(SpecModel):
    uri: str | None = Field(None, description="folder of images with optional .txt captions")
    trigger_word: str | None = Field(None, description="a word prepended once to every caption")
    caption_extension: str = Field(".txt", pattern=r"^\.[A-Za-z0-9]+$", description="sidecar caption suffix")
    caption_dropout: Float = Field(
        0.0, ge=0.0, lt=1.0, description="share of samples trained with an empty caption, 0 <= p < 1"
    )
    repeats: Int = Field(
        1, ge=1, le=1000, description="times each image is seen per epoch (folders named '<N>_<name>' override)"
    )
    background: Colour = Field(
        "white", description="colour transparent pixels are composited on ('#rrggbb' or a CSS colour name)"
    )
    archives: Literal["reject_archive", "keep_safe_members"] = Field(
        "reject_archive", description="one unsafe member in an uploaded archive: 'reject_archive' (all of it, the "
        "safe default) or 'keep_safe_members'; the lost members are reported either way"
    )
    filter: FilterSection = FilterSection()
    caption: CaptionSection = CaptionSection()
    checks: ChecksSection = ChecksSection()


class ModelSection(SpecModel):
    base_model: str = Field(
        description="a diffusers folder, a single-file .safetensors checkpoint, or a hub id like 'org/name'"
    )
    base_model_config: str | None = Field(
        None, description="for a single-file checkpoint: a diffusers folder or hub id holding its configs"
    )
    allow_pickle: bool = Field(
        False, description="true to load a .ckpt/.bin with torch.load(weights_only=True); prefer .safetensors"
    )
    lora_rank: Int = Field(8, ge=1, le=1024, description="LoRA rank, an integer from 1 to 1024 (4-64 is usual)")
    lora_alpha: PositiveFloat | Auto = Field("auto", description="LoRA alpha > 0, or 'auto' for alpha = rank")
    lora_dropout: Float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA path, 0 <= p < 1")
    target_modules: list[str] = Field(
        IMAGE_TARGETS,
        min_length=1,
        description="names of the layers to adapt; default ['to_q', 'to_k', 'to_v', 'to_out.0'] for image jobs, "
                    "['q_proj', 'v_proj'] for text jobs",
    )
    method: Literal["lora", "dora"] = Field("lora", description="'lora' or 'dora' (weight-decomposed LoRA)")

    @property
    def alpha(self) -> float:
        return float(self.lora_rank) if self.lora_alpha == "auto" else float(self.lora_alpha)


class TrainingSection(SpecModel):
    batch_size: PositiveInt | Auto = Field(
        1, description="samples per step: an integer >= 1, or 'auto' for the largest that fits"
    )
    gradient_accumulation_steps: Int = Field(1, ge=1, le=1024, description="micro-batches per optimizer step, >= 1")
    epochs: Int = Field(10, ge=1, le=100_000, description="passes over the dataset, >= 1")
    max_steps: Int | None = Field(
        None, ge=1, description="optimizer steps; when set it overrides epochs (an integer >= 1)"
    )
    learning_rate: Float = Field(1e-4, gt=0.0, le=1.0, description="AdamW learning rate, > 0 (1e-4 is usual)")
    lr_scheduler: Literal["constant", "constant_with_warmup", "cosine", "linear"] = Field(
        "constant", description="'constant', 'constant_with_warmup', 'cosine' or 'linear'"
    )
    lr_warmup_steps: Int = Field(0, ge=0, description="steps of linear warm-up, >= 0")
    adam_beta1: Float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1 in [0, 1)")
    adam_beta2: Float = Field(0.999, ge=0.0, lt=1.0, description="AdamW beta2 in [0, 1)")
    adam_weight_decay: Float = Field(1e-2, ge=0.0, description="AdamW weight decay, >= 0")
    adam_epsilon: Float = Field(1e-8, gt=0.0, description="AdamW epsilon, > 0")
    max_grad_norm: Float = Field(1.0, gt=0.0, description="gradient clipping norm, > 0")
    resolution: Pixels = Field(512, ge=32, le=4096, description="training resolution in pixels, a multiple of 8")
    bucketing: bool = Field(True, description="group images by aspect ratio instead of cropping to a square")
    bucket_step: Annotated[Pixels, Field(ge=8)] | Auto = Field(
        "auto", description="bucket side granularity in pixels, or 'auto'"
    )
    max_aspect_ratio: Float = Field(
        4.0, ge=1.0, le=8.0, description="widest bucket side ratio, >= 1 (4 matches kohya-ss at 256-1024 px)"
    )
    allow_upscale: bool = Field(
        True, description="train images smaller than their bucket by upscaling them (with a warning that lists "
        "them); false refuses them before training, as kohya-ss's --bucket_no_upscale keeps them from blurring"
    )
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="'no', 'fp16' (needs a CUDA GPU), 'bf16', or 'auto'"
    )
    gradient_checkpointing: bool | Auto = Field(
        "auto", description="true, false, or 'auto' (on when memory is tight)"
    )
    latent_cache: Literal["memory", "disk", "off"] = Field(
        "memory", description="where VAE latents and text embeddings are cached: 'memory', 'disk' or 'off'"
    )
    max_length: Int | None = Field(
        None, ge=8, description="text jobs: longest example in tokens, >= 8; default: the model's context length"
    )
    packing: bool = Field(
        False, description="text jobs: pack examples into rows of max_length tokens (each attends to itself only) "
        "instead of padding each batch to its longest"
    )
    save_steps: Int = Field(500, ge=1, description="checkpoint every N optimizer steps, >= 1")
    logging_steps: Int | None = Field(
        None, ge=1, description="write the mean loss to metrics.jsonl every N optimizer steps; default: every "
        "step on a CPU, every 10 on a GPU (reading the loss makes the host wait for the GPU)"
    )
    checkpoints_total_limit: Int = Field(2, ge=1, description="complete checkpoints kept, >= 1")
    sample_every_n_steps: Int | None = Field(
        None, ge=1, description="image jobs: sample images with the LoRA as it is every N optimizer steps and at the "
        "last, into the output folder's samples/ (kohya-ss's --sample_every_n_steps); unset: none"
    )
    sample_prompts: list[Annotated[str, Field(pattern=r"\S")]] | None = Field(
        None, min_length=1, max_length=16, description="what to sample during training, 1 to 16 prompts; default: "
        "the first eval.max_prompts distinct training captions (trigger word included). Seeds, steps and size are "
        "eval's"
    )
    compare_at_end: bool = Field(
        True, description="measure the adapter against the base model on training data when training ends; the "
        "DAG turns it off, since its evaluate stage measures on held-out data (once a job)"
    )
    seed: Int = Field(42, ge=0, lt=2**63, description="random seed, a non-negative integer")

    @model_validator(mode="after")
    def _warmup_within_steps(self) -> TrainingSection:
        if self.max_steps is not None and self.lr_warmup_steps > self.max_steps:
            raise ValueError(
                f"lr_warmup_steps: {self.lr_warmup_steps} warm-up steps exceed max_steps ({self.max_steps}); "
                "lower lr_warmup_steps"
            )
        return self


class EvalSection(SpecModel):
    holdout_fraction: Float = Field(
        0.1, ge=0.0, le=0.5, description="share of kept images (of text records, for text jobs) held out of "
        "training to measure the adapter"
    )
    holdout_min: Int = Field(1, ge=0, description="fewest held-out images (when at least 4 images are kept)")
    max_loss_ratio: Float = Field(
        1.02, gt=0.0, description="quality gate: held-out loss with the adapter / without it must not exceed this"
    )
    prompts: list[Annotated[str, Field(pattern=r"\S")]] | None = Field(
        None, min_length=1,
        description="at least one prompt to sample base and LoRA images for (each also without the trigger "
                    "word); omit the key to sample held-out captions",
    )
    max_prompts: Int = Field(4, ge=1, le=32, description="how many held-out captions become sample prompts")
    max_compare_items: Int = Field(
        16, ge=1, le=100_000, description="images (text jobs: records) the base-vs-adapter loss comparison uses at "
        "most, which bounds its cost (an image costs 10 UNet passes: 5 timesteps, with and without the adapter)"
    )
    sample_steps: Int = Field(20, ge=1, le=200, description="denoising steps per sample image")
    sample_guidance: Float = Field(7.5, ge=0.0, le=30.0, description="classifier-free guidance scale of the samples")
    sample_size: Pixels | None = Field(
        None, ge=32, le=2048, description="sample image side in pixels, a multiple of 8; default: training resolution"
    )
    seed: Int = Field(0, ge=0, description="sample i uses seed + i, with and without the LoRA: reruns repeat pixels")
    max_new_tokens: Int = Field(
        48, ge=1, le=2048, description="text jobs: tokens generated per eval prompt (greedy, so reruns repeat them)"
    )
    clip_model: str | None = Field(
        None, description="folder or hub id of a CLIP model to score each sample against its prompt; unset: no score"
    )
    min_clip_score: Float | None = Field(
        None, ge=0.0, le=100.0,
        description="quality gate: the LoRA samples' mean CLIP score (0-100) must reach this; needs clip_model",
    )

    @model_validator(mode="after")
    def _clip_gate_has_a_model(self) -> EvalSection:
        if self.min_clip_score is not None and self.clip_model is None:
            raise ValueError("min_clip_score: a CLIP score gate needs a CLIP model; set eval.clip_model to a CLIP "
                             "folder or hub id, or remove eval.min_clip_score")
        return self


class OutputSection(SpecModel):
    uri: str | None = Field(None, description="output folder; default ./output/<tenant>/<name>")
    formats: list[Literal["diffusers", "kohya", "peft"]] = Field(
        IMAGE_FORMATS, min_length=1,
        description="any of 'diffusers', 'kohya', 'peft' for image jobs (default diffusers and kohya); 'peft' for "
                    "text jobs"
    )
    merged: bool = Field(
        False, description="text jobs: also write the base model with the adapter merged in (peft's "
        "merge_and_unload) under merged/, for tools that cannot load an adapter"
    )
    license: str = Field(
        "other", pattern=r"^[a-z0-9][a-z0-9.+-]{0,63}$",
        description="the model card's license id, e.g. 'creativeml-openrail-m' (SD 1.5) or 'other'"
    )
    public: bool = Field(False, description="true lets every tenant use the adapter as '<tenant>/<name>'")


class JobSpec(SpecModel):
    job: JobSection = JobSection()
    dataset: DatasetSection = DatasetSection()
    model: ModelSection = Field(alias="model_config", description="base model and LoRA shape")
    training: TrainingSection = Field(TrainingSection(), alias="training_config")
    eval: EvalSection = EvalSection()
    output: OutputSection = OutputSection()
    _source: str = PrivateAttr("job spec")
    """Where the spec was read from (its file, or the run's conf), for the errors found later."""

    @property
    def source(self) -> str:
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """Target modules and formats default per task: a Llama has no ``to_q``, a UNet no ``q_proj``."""
        if not isinstance(data, dict):
            return data
        job = data.get("job")
        task = job.get("task", "image") if isinstance(job, dict) else getattr(job, "task", "image")
        if task != "text":
            return data
        data = dict(data)
        model, output = data.get("model_config"), data.get("output", {})
        if isinstance(model, dict) and "target_modules" not in model:
            data["model_config"] = {**model, "target_modules": TEXT_TARGETS}
        if isinstance(output, dict) and "formats" not in output:
            data["output"] = {**output, "formats": TEXT_FORMATS}
        return data

    @model_validator(mode="after")
    def _formats_fit_task(self) -> JobSpec:
        formats = self.output.formats
        if self.job.task == "text" and formats != ["peft"]:
            raise ValueError(f"output.formats: a text LoRA is written in peft's format (what PeftModel, vLLM and "
                             f"LoRAX load), not {', '.join(f for f in formats if f != 'peft')}; use [peft]")
        if self.job.task == "text" and self.training.sample_every_n_steps:
            raise ValueError(TEXT_SAMPLING)
        if self.job.task == "image" and self.output.merged:
            raise ValueError("output.merged: merged weights are written for text jobs only; remove output.merged")
        if self.model.method == "dora" and formats == ["kohya"]:
            raise ValueError(f"output.formats: {KOHYA_DORA} and kohya is the only format asked for, so nothing "
                             "would be written; use [diffusers, peft], which diffusers and peft load exactly")
        return self

    @property
    def written_formats(self) -> list[str]:
        """The formats the export writes: all that were asked for, but kohya's for a DoRA (see format_notes)."""
        if self.model.method == "dora":
            return [f for f in self.output.formats if f != "kohya"]
        return list(self.output.formats)

    def format_notes(self) -> list[str]:
        """Why an asked-for format is not written, for the run's warnings."""
        skipped = [f for f in self.output.formats if f not in self.written_formats]
        return [f"output.formats: {KOHYA_DORA}, so kohya is not written; "
                f"{', '.join(self.written_formats)} {'is' if len(self.written_formats) == 1 else 'are'} written, "
                "which diffusers and peft load exactly"] if skipped else []

    def output_dir(self) -> Path:
        return Path(self.output.uri or f"./output/{self.job.tenant}/{self.job.name}")

    def to_yaml_dict(self) -> dict[str, Any]:
        """The spec with every default filled in, in the user's key names."""
        return self.model_dump(mode="json", by_alias=True)

