"""The model card for each kind of version: what its front matter says, and that each snippet loads what
the version holds."""

from __future__ import annotations

from huggingface_hub import ModelCard

from lora_tasks.publish.card import model_card
from tests.lora_tasks.publish.conftest import REPORT, SUMMARY, make_spec

S3_URI = "s3://bucket/platform/tenants/acme/loras/cats/v2"


def card(**kwargs: object) -> ModelCard:
    """Rendered, then parsed back as the hub parses a README."""
    arguments = {"spec": make_spec(), "version": 2, "uri": S3_URI, "summary": SUMMARY, "report": REPORT,
                 "files": ["pytorch_lora_weights.safetensors", "cats.safetensors", "sample_grid.png"]} | kwargs
    return ModelCard(model_card(**arguments).content)  # type: ignore[arg-type]


def test_an_s3_version_is_downloaded_first_then_loaded_from_its_folder() -> None:
    text = card().text
    assert "aws s3 cp --recursive s3://bucket/platform/tenants/acme/loras/cats/v2 cats-v2" in text
    assert 'pipe.load_lora_weights("cats-v2", weight_name="pytorch_lora_weights.safetensors")' in text
    assert 'pipe("sks, a cat")' in text and 'StableDiffusionPipeline.from_pretrained("org/tiny-sd")' in text


def test_a_peft_only_version_has_a_self_contained_peft_snippet_and_no_other() -> None:
    text = card(spec=make_spec(formats=("peft",)), files=["adapter_model.safetensors", "adapter_config.json"]).text
    assert "## Use with peft" in text and "pipe = StableDiffusionPipeline.from_pretrained" in text
    assert "load_lora_weights" not in text and "<lora:" not in text


def test_a_local_single_file_base_model_is_named_not_located() -> None:
    summary = SUMMARY | {"base_model": {"kind": "single_file", "location": "/data/models/v1-5-pruned.safetensors"}}
    parsed = card(summary=summary, report={})
    assert parsed.data.base_model == "v1-5-pruned.safetensors"
    assert 'from_single_file("/data/models/v1-5-pruned.safetensors")' in parsed.text  # copy-paste on the platform
    assert "## Evaluation" not in parsed.text


def test_dora_and_no_trigger_word_and_no_grid() -> None:
    spec = make_spec(formats=("diffusers", "peft"))
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"method": "dora"}),
                                   "dataset": spec.dataset.model_copy(update={"trigger_word": None})})
    data = card(spec=spec, report={}, files=["pytorch_lora_weights.safetensors"]).data.to_dict()
    assert "dora" in data["tags"] and "instance_prompt" not in data and "widget" not in data


def test_samples_made_during_training_are_shown_with_their_cost() -> None:
    summary = SUMMARY | {"training_samples": {"steps": [50, 100], "images": 4, "seconds": 2.0,
                                              "seconds_per_image": 0.5}}
    text = card(summary=summary, files=["pytorch_lora_weights.safetensors", "training_samples.png"]).text
    assert "![Samples during training, a row per step](training_samples.png)" in text
    assert "| samples during training | 4 images at 2 steps, 0.50 s an image (not in the step time) |" in text
    assert "- `training_samples.png`: samples made during training" in text
    assert "training_samples.png" not in card().text


def test_a_comparison_on_part_of_the_held_out_images_says_on_how_many() -> None:
    assert "| images the losses are measured on | 16 |" in card(report=REPORT | {"images": 40,
                                                                                "compared_images": 16}).text
    assert "images the losses are measured on" not in card(report=REPORT | {"images": 4, "compared_images": 4}).text
