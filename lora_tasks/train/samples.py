"""Sample images for the eval report and during training: which prompts, and the same pixels on every rerun.

Each prompt is sampled twice with the same seed, by the base model before the adapter is loaded and by
the LoRA after, so the two images differ by the adapter alone. The default prompts are held-out
captions as they were trained (the trigger word included) and again without the trigger word: the
pair shows whether the style comes with the word or leaks into every prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lora_tasks.intake.captions import clean
from lora_tasks.scheduling.memory import SAMPLE_BATCH
from lora_tasks.spec.schema import EvalSection


@dataclass(frozen=True)
class SamplePrompt:
    text: str
    seed: int
    with_trigger: bool
    """Whether ``text`` holds the job's trigger word."""
    bare: str
    """The text without the trigger word: what a CLIP model, which never saw the word, scores against."""


def _word(trigger: str) -> str:
    return rf"(?<!\w){re.escape(trigger)}(?!\w)"


def without_trigger(prompt: str, trigger: str | None) -> str:
    """The prompt with every whole-word trigger (and the comma after it) removed."""
    if not trigger:
        return prompt
    return clean(re.sub(_word(trigger) + r"\s*,?", "", prompt)).strip(" ,;:")


def has_trigger(prompt: str, trigger: str | None) -> bool:
    return bool(trigger) and re.search(_word(str(trigger)), prompt) is not None


def sample_prompts(captions: list[str], section: EvalSection, trigger: str | None) -> tuple[list[SamplePrompt],
                                                                                           str | None]:
    """The prompts to sample, each followed by its trigger-less variant, seeded ``section.seed + i``; with
    none, the reason and its fix."""
    if section.prompts:
        chosen = list(section.prompts)
    else:
        chosen = list(dict.fromkeys(c for c in map(clean, captions) if c))[:section.max_prompts]
    if not chosen and trigger:
        chosen = [trigger]
    if not chosen:
        return [], ("no sample images were made: there is no prompt to sample (the held-out captions are empty, "
                    "no trigger word is set and eval.prompts is not given). Fix: set eval.prompts, or "
                    "dataset.trigger_word, or caption the images")
    texts: dict[str, None] = {}
    for prompt in chosen:
        texts[prompt] = None
        bare = without_trigger(prompt, trigger)
        if bare:
            texts[bare] = None
    return [SamplePrompt(text, section.seed + i, has_trigger(text, trigger), without_trigger(text, trigger) or text)
            for i, text in enumerate(texts)], None


def training_sample_prompts(captions: list[str], prompts: list[str] | None, section: EvalSection,
                            trigger: str | None) -> list[SamplePrompt]:
    """What to sample while training (training_config.sample_prompts, else the first ``eval.max_prompts``
    distinct training captions as trained, else the trigger word), seeded ``eval.seed + i`` as the eval's are;
    empty when there is nothing to sample."""
    if prompts:
        chosen = list(prompts)
    else:
        chosen = list(dict.fromkeys(c for c in map(clean, captions) if c))[:section.max_prompts]
        chosen = chosen or ([trigger] if trigger else [])
    return [SamplePrompt(text, section.seed + i, has_trigger(text, trigger), without_trigger(text, trigger) or text)
            for i, text in enumerate(chosen)]


def sampling_pipeline(models: Any) -> Any:
    """A StableDiffusionPipeline over the loaded parts, with DPM-Solver++ (good images in 20 steps) as
    its sampler; the training noise scheduler stays as it is for the loss."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=models.vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer, unet=models.unet,
        scheduler=DPMSolverMultistepScheduler.from_config(models.noise_scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, prompts: list[SamplePrompt], section: EvalSection, size: int) -> list[Any]:
    """One PIL image per prompt from its own seeded generator (on the CPU, so any device draws the same
    starting noise)."""
    import torch

    images: list[Any] = []
    for start in range(0, len(prompts), SAMPLE_BATCH):
        batch = prompts[start:start + SAMPLE_BATCH]
        images += pipe([p.text for p in batch], num_inference_steps=section.sample_steps,
                       guidance_scale=section.sample_guidance, height=size, width=size,
                       generator=[torch.Generator().manual_seed(p.seed) for p in batch]).images
    return images
