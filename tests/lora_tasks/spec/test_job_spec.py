"""The job spec: the seed format loads unchanged; each kind of bad input names key, value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_tasks.errors import JobSpecError
from lora_tasks.spec.loading import MAX_SPEC_BYTES, apply_overrides, load_job_spec, parse_job_spec, read_yaml_text

SEED = Path(__file__).parents[3] / "include" / "jobs" / "seed.yaml"


def seed_with(*overrides: str) -> dict:
    return apply_overrides(read_yaml_text(SEED.read_text(), "seed.yaml"), list(overrides))


def test_seed_yaml_loads_unchanged_with_defaults() -> None:
    spec = load_job_spec(SEED)
    assert spec.model.base_model == "./models/Stable-diffusion/v1-5-pruned.safetensors"
    assert spec.model.lora_rank == 8
    assert spec.model.target_modules == ["q_proj", "v_proj"]
    assert spec.training.batch_size == 4
    assert spec.training.epochs == 10
    assert spec.training.learning_rate == pytest.approx(2e-4)  # YAML 1.1 reads 2e-4 as a string
    assert spec.model.alpha == 8.0
    assert spec.job.priority == "standard"
    assert spec.output.formats == ["diffusers", "kohya"]
    assert spec.output_dir() == Path("output/default/lora")


def test_auto_values_are_accepted() -> None:
    spec = parse_job_spec(seed_with("training_config.batch_size=auto", "training_config.gradient_checkpointing=auto",
                                    "training_config.mixed_precision=auto", "model_config.lora_alpha=auto"))
    assert spec.training.batch_size == "auto"
    assert spec.training.gradient_checkpointing == "auto"


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("model_config.lora_rnak=4", "model_config.lora_rnak", "did you mean 'lora_rank'"),
        ("training_config.epochz=3", "training_config.epochz", "did you mean 'epochs'"),
        ("model_confg.x=1", "model_confg", "did you mean 'model_config'"),
        ("training_config.batch_size=four", "training_config.batch_size", "got 'four' (str)"),
        ("training_config.batch_size=true", "training_config.batch_size", "got the boolean true"),
        ("model_config.lora_rank=8.5", "model_config.lora_rank", "fractional part"),
        ("model_config.lora_rank=0", "model_config.lora_rank", "greater than or equal to 1"),
        ("model_config.lora_rank=2048", "model_config.lora_rank", "less than or equal to 1024"),
        ("training_config.learning_rate=0", "training_config.learning_rate", "greater than 0"),
        ("training_config.learning_rate=-1e-4", "training_config.learning_rate", "greater than 0"),
        ("training_config.batch_size=0", "training_config.batch_size", "greater than or equal to 1"),
        ("training_config.mixed_precision=fp17", "training_config.mixed_precision", "did you mean 'fp16'"),
        ("training_config.resolution=100", "training_config.resolution", "multiple of 8"),
        ("model_config.lora_alpha=-2", "model_config.lora_alpha", "greater than 0"),
        ("model_config.target_modules=[]", "model_config.target_modules", "at least 1 item"),
        ("output.formats=[kohya, onnx]", "output.formats[1]", "'onnx'"),
        ("job.tenant=../other", "job.tenant", "'..' is not allowed"),
        ("job.name=a/b", "job.name", "should match pattern"),
        ("training_config=5", "training_config", "must be a mapping"),
        ("job.task=video", "job.task", "Input should be 'image' or 'text'"),
        ("dataset.filter.min_side=0", "dataset.filter.min_side", "greater than or equal to 1"),
        ("dataset.checks.min_caption_coverage=2", "dataset.checks.min_caption_coverage", "less than or equal"),
    ],
)
def test_bad_values_name_key_value_and_fix(override: str, key: str, expected: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(seed_with(override), "seed.yaml")
    problems = {p.key: p for p in caught.value.problems}
    assert key in problems, caught.value
    assert expected in str(problems[key])
    assert problems[key].fix
    assert "seed.yaml" in str(caught.value)


def test_cross_field_problems_are_reported_at_their_key() -> None:
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(seed_with("training_config.max_steps=5", "training_config.lr_warmup_steps=10"))
    assert caught.value.problems[0].key == "training_config.lr_warmup_steps"
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(seed_with("model_config.method=dora", "output.formats=[kohya]"))
    assert caught.value.problems[0].key == "output.formats"
    assert "a dora_scale per input column" in caught.value.problems[0].message and "nothing would be written" in \
        caught.value.problems[0].message


def test_a_dora_job_writes_the_formats_that_can_hold_it_and_says_so() -> None:
    spec = parse_job_spec(seed_with("model_config.method=dora"))  # formats default to diffusers and kohya
    assert spec.written_formats == ["diffusers"]
    [note] = spec.format_notes()
    assert "a dora_scale per input column" in note and "so kohya is not written; diffusers is written" in note
    assert parse_job_spec(seed_with()).format_notes() == []


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(JobSpecError) as caught:
        parse_job_spec(seed_with("model_config.lora_rank=0", "training_config.learning_rate=0", "job.x=1"))
    assert len(caught.value.problems) == 3


def test_missing_base_model_key() -> None:
    with pytest.raises(JobSpecError, match=r"model_config: is required but missing"):
        parse_job_spec({"training_config": {"epochs": 1}})
    with pytest.raises(JobSpecError, match=r"model_config.base_model: is required"):
        parse_job_spec({"model_config": {"lora_rank": 4}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model_config:\n  lora_rank: 4\n  lora_rank: 8\n", "appears twice"),
        ("- a\n- b\n", "must be a mapping"),
        ("model_config: [unclosed\n", "not valid YAML"),
        ("x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("a: " + "x" * MAX_SPEC_BYTES, "byte limit"),
    ],
)
def test_yaml_is_read_safely(text: str, expected: str) -> None:
    with pytest.raises(JobSpecError, match=expected):
        read_yaml_text(text, "job.yaml")


def test_missing_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match="does not exist"):
        load_job_spec(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(JobSpecError, match="byte limit"):
        load_job_spec(big)


def test_overrides_parse_values_as_yaml() -> None:
    spec = parse_job_spec(seed_with("training_config.max_steps=50", "model_config.target_modules=[to_q]"))
    assert spec.training.max_steps == 50
    assert spec.model.target_modules == ["to_q"]
    with pytest.raises(JobSpecError, match=r"section\.key=value"):
        apply_overrides({}, ["max_steps"])
