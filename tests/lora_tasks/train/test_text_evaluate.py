"""The evaluate stage on a text adapter: held-out perplexity base vs adapter on records the trainer never
saw, greedy generations side by side that repeat on a rerun, and the quality gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.tiny.text_data import GREETINGS, write_text_dataset
from lora_tasks.train.evaluate import QualityGateError, evaluate_adapter
from lora_tasks.train.text_examples import tokenize
from lora_tasks.train.trainer import LoraTrainer, TrainResult

pytestmark = pytest.mark.slow
VOICE = "Ahoy"
"""Every styled answer opens with it; the random base model never writes it."""


def job(model: Path, data: Path, out: Path, **eval_options: object) -> dict:
    return {"job": {"name": "voice", "task": "text"}, "dataset": {"uri": str(data)},
            "model_config": {"base_model": str(model), "lora_rank": 8},
            "training_config": {"max_steps": 100, "batch_size": 4, "learning_rate": 1e-2},
            "eval": {"max_new_tokens": 24, **eval_options}, "output": {"uri": str(out)}}


@pytest.fixture(scope="module")
def run(tiny_llm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, LoraTrainer, TrainResult]:
    folder = tmp_path_factory.mktemp("text-eval")
    data = write_text_dataset(folder / "data", count=60, layout="prompt_completion")
    spec = job(tiny_llm, data, folder / "out")
    trainer = LoraTrainer(parse_job_spec(spec))
    return spec, trainer, trainer.train()


def test_held_out_perplexity_falls_and_the_adapter_writes_in_its_voice(run, tmp_path: Path) -> None:
    spec, trainer, result = run
    report = evaluate_adapter(parse_job_spec(spec), result.adapter_dir, Path(spec["dataset"]["uri"]), tmp_path)
    assert report["held_out"] and report["examples"] == len(trainer.task.held_out) == 6
    assert report["lora_perplexity"] < report["base_perplexity"] and report["passed"]
    assert json.loads((tmp_path / "eval_report.json").read_text())["loss_ratio"] == report["loss_ratio"]
    generations = report["generations"]
    assert len(generations) == 4 and all(g["base"] != g["lora"] for g in generations)
    assert all(greeting.startswith(VOICE) for greeting in GREETINGS)
    assert all(VOICE in g["lora"] for g in generations) and not any(VOICE in g["base"] for g in generations)
    again = evaluate_adapter(parse_job_spec(spec), result.adapter_dir, Path(spec["dataset"]["uri"]), tmp_path / "2")
    assert again["generations"] == generations  # greedy: a rerun writes the same text


def test_the_held_out_records_were_not_trained_on(run) -> None:
    _, trainer, _ = run
    held = {r.key for r in trainer.task.held_out}
    trained = [e.input_ids for e in trainer.task.examples]
    assert held and len(trained) + len(held) == 60
    held_ids = [tokenize(r.record, trainer.task.tokenizer).input_ids for r in trainer.task.held_out]
    assert not any(ids in trained for ids in held_ids)


def test_the_gate_fails_with_the_perplexities_and_keeps_the_report(run, tmp_path: Path) -> None:
    spec, _, result = run
    strict = parse_job_spec({**spec, "eval": {**spec["eval"], "max_loss_ratio": 0.1}})
    with pytest.raises(QualityGateError, match=r"held-out perplexity is [\d.]+ \(base model [\d.]+\): next-token "
                                               r"loss x[\d.]+, over the gate eval.max_loss_ratio x0.1; it is not "
                                               r"published. Fix:"):
        evaluate_adapter(strict, result.adapter_dir, Path(spec["dataset"]["uri"]), tmp_path)
    assert json.loads((tmp_path / "eval_report.json").read_text())["passed"] is False
