"""The trainer on a text job: the same LoraTrainer on the tiny Llama, a peft folder that PeftModel loads to
the trainer's very logits, merged weights, DoRA, packing, the parameter count, and bad input refused."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from lora_tasks.errors import DatasetError, JobSpecError
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.tiny.text_data import write_text_dataset
from lora_tasks.train.param_count import base_parameters, lora_parameters
from lora_tasks.train.trainer import LoraTrainer

pytestmark = pytest.mark.slow
QUESTION = "<|user|>\nMy invoice is missing.</s>\n<|assistant|>\n"


def text_trainer(model: Path, data: Path, out: Path, **sections: dict[str, Any]) -> LoraTrainer:
    job: dict[str, dict[str, Any]] = {
        "job": {"name": "voice", "task": "text"},
        "dataset": {"uri": str(data)},
        "model_config": {"base_model": str(model), "lora_rank": 4},
        "training_config": {"max_steps": 24, "batch_size": 4, "learning_rate": 3e-3, "save_steps": 12},
        "output": {"uri": str(out)},
    }
    for section, values in sections.items():
        job.setdefault(section, {}).update(values)
    return LoraTrainer(parse_job_spec(job))


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_dataset(tmp_path_factory.mktemp("chats"), count=48, layout="messages")


@pytest.fixture(scope="module")
def trained(tiny_llm: Path, chats: Path, tmp_path_factory: pytest.TempPathFactory) -> LoraTrainer:
    trainer = text_trainer(tiny_llm, chats, tmp_path_factory.mktemp("run") / "out")
    trainer.result = trainer.train()
    return trainer


def logits(model: Any, tokenizer: Any) -> torch.Tensor:
    ids = tokenizer(QUESTION, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_the_lora_learns_the_voice_and_counts_its_parameters(trained: LoraTrainer, tiny_llm: Path) -> None:
    summary = trained.result.summary
    assert summary["job"]["task"] == "text"
    assert (summary["examples"], summary["held_out_examples"]) == (43, 5)  # eval.holdout_fraction 0.1, by record
    assert summary["train_loss"]["last"] < summary["train_loss"]["first"]
    assert summary["token_loss"]["lora"] < summary["token_loss"]["base"]
    assert summary["trained_tokens"] < summary["tokens"]  # assistant turns only
    config = json.loads((tiny_llm / "config.json").read_text())
    counted = lora_parameters(config, ["q_proj", "v_proj"], rank=4)
    assert summary["lora"]["parameters"] == counted.lora
    assert summary["lora"]["model_parameters"] == counted.base == base_parameters(config)
    assert summary["lora"]["share"] == pytest.approx(counted.share)


def test_the_peft_folder_loads_with_no_missing_keys_to_the_trainers_logits(trained: LoraTrainer,
                                                                           tiny_llm: Path) -> None:
    adapter = trained.result.adapter_dir
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in adapter.iterdir()}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["r"]) == ("LORA", "CAUSAL_LM", 4)
    assert set(config["target_modules"]) == {"q_proj", "v_proj"}
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm), adapter).eval()
    saved = load_file(adapter / "adapter_model.safetensors")
    assert saved.keys() == get_peft_model_state_dict(loaded).keys()
    assert torch.equal(logits(loaded, trained.task.tokenizer), logits(trained.task.module, trained.task.tokenizer))
    with loaded.disable_adapter():
        assert not torch.equal(logits(loaded, trained.task.tokenizer), logits(trained.task.module,
                                                                              trained.task.tokenizer))


def test_merged_weights_load_as_a_plain_model(tiny_llm: Path, chats: Path, tmp_path: Path) -> None:
    trainer = text_trainer(tiny_llm, chats, tmp_path / "out", training_config={"max_steps": 6},
                           output={"merged": True})
    result = trainer.train()
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm), result.adapter_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(result.adapter_dir / "merged").eval()
    tokenizer = trainer.task.tokenizer
    torch.testing.assert_close(logits(merged, tokenizer), logits(adapter, tokenizer), rtol=1e-4, atol=1e-5)
    assert "merged/model.safetensors" in result.summary["files"]


def test_dora_differs_from_lora_and_reloads_to_the_trainers_logits(trained: LoraTrainer, tiny_llm: Path,
                                                                    chats: Path, tmp_path: Path) -> None:
    dora = text_trainer(tiny_llm, chats, tmp_path / "out", model_config={"method": "dora"})
    result = dora.train()
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora = load_file(trained.result.adapter_dir / "adapter_model.safetensors")
    magnitudes = [k for k in weights if "lora_magnitude_vector" in k]
    assert magnitudes and not any("magnitude" in k for k in lora)
    assert any(not torch.equal(weights[k], lora[k]) for k in lora)
    assert json.loads((result.adapter_dir / "adapter_config.json").read_text())["use_dora"] is True
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llm), result.adapter_dir).eval()
    assert torch.equal(logits(loaded, dora.task.tokenizer), logits(dora.task.module, dora.task.tokenizer))


def test_packing_trains_fewer_rows_than_examples(tiny_llm: Path, tmp_path: Path) -> None:
    data = write_text_dataset(tmp_path / "data", count=40, layout="text")
    result = text_trainer(tiny_llm, data, tmp_path / "out", training_config={"packing": True, "max_length": 128,
                                                                             "max_steps": 12}).train()
    summary = result.summary
    assert summary["packing"] and summary["rows"] < summary["examples"] == 36
    assert summary["token_loss"]["lora"] < summary["token_loss"]["base"]


def test_a_target_the_model_lacks_is_refused_with_the_candidates(tiny_llm: Path, chats: Path, tmp_path: Path) -> None:
    with pytest.raises(JobSpecError) as caught:
        text_trainer(tiny_llm, chats, tmp_path, model_config={"target_modules": ["q_proj", "to_k"]})
    message = str(caught.value)
    assert "'to_k' match no layer" in message
    assert "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj" in message


def test_too_long_examples_are_truncated_and_counted_or_refused(tiny_llm: Path, chats: Path, tmp_path: Path) -> None:
    texts = write_text_dataset(tmp_path / "texts", count=20, layout="text")
    result = text_trainer(tiny_llm, texts, tmp_path / "cut", training_config={"max_length": 16, "max_steps": 4}).train()
    summary = result.summary
    assert summary["truncated"] == summary["examples"] == 18 and summary["unlearnable"] == 0
    assert math.isfinite(summary["train_loss"]["last"]) and math.isfinite(summary["token_loss"]["lora"])
    with pytest.raises(DatasetError, match=r"train\.jsonl record 1 is \d+ tokens, longer than the 16"):
        text_trainer(tiny_llm, texts, tmp_path / "refused", training_config={"max_length": 16},
                     dataset={"filter": {"too_long": "reject"}}).train()
    assert not (tmp_path / "refused" / "adapter").exists()
    # the assistant's turn starts past token 24 in every chat: nothing would be learnt, and the loss be NaN
    with pytest.raises(DatasetError, match="keeps a token to learn within the 24 tokens"):
        text_trainer(tiny_llm, chats, tmp_path / "nothing", training_config={"max_length": 24}).train()


def test_a_row_longer_than_the_context_is_refused(tiny_llm: Path, chats: Path, tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"training_config.max_length: 4096 tokens is longer than the model's "
                                           r"context of 256"):
        text_trainer(tiny_llm, chats, tmp_path, training_config={"max_length": 4096})


def test_a_chat_template_that_hides_the_assistant_turns_is_named_with_the_record(tiny_llm: Path, chats: Path,
                                                                                tmp_path: Path) -> None:
    unmarked = tmp_path / "unmarked"
    shutil.copytree(tiny_llm, unmarked)
    template = unmarked / "chat_template.jinja"
    template.write_text(template.read_text().replace("{% generation %}", "").replace("{% endgeneration %}", ""))
    with pytest.raises(DatasetError, match=r"train\.jsonl record 1: the tokenizer's chat template does not mark "
                                           r"assistant turns"):
        text_trainer(unmarked, chats, tmp_path / "out").train()


def test_chat_data_needs_a_chat_template(tiny_llm: Path, chats: Path, tmp_path: Path) -> None:
    plain = tmp_path / "no-template"
    shutil.copytree(tiny_llm, plain)
    (plain / "chat_template.jinja").unlink()
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(DatasetError, match=r"has no chat template.*Fix: use a chat model.s tokenizer"):
        text_trainer(plain, chats, tmp_path / "out").train()


def test_a_text_job_wants_a_language_model_and_the_peft_format(tiny_llm: Path, tiny_model: Path, chats: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"is a diffusion pipeline, but job.task is .text."):
        text_trainer(tiny_model, chats, tmp_path)
    peft_only = r"a text LoRA is written in peft.s format .* not kohya. Fix: use \[peft\]"
    with pytest.raises(JobSpecError, match=peft_only):
        text_trainer(tiny_llm, chats, tmp_path, output={"formats": ["peft", "kohya"]})
    with pytest.raises(JobSpecError, match=r"training_config.sample_every_n_steps: text jobs are not sampled"):
        text_trainer(tiny_llm, chats, tmp_path, training_config={"sample_every_n_steps": 5})
