"""The trainer end to end on the tiny model: what it writes, that real tools load it, and failures."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lora_tasks.errors import DatasetError, JobSpecError, LoraTaskError, ModelLoadError, UnsafeFileError
from lora_tasks.spec.loading import parse_job_spec
from lora_tasks.train.trainer import LoraTrainer, TrainResult
from tests.conftest import base_job

pytestmark = pytest.mark.slow


def train(model: Path, images: Path, out: Path, **sections: dict[str, Any]) -> TrainResult:
    job = base_job(model, images, out)
    for section, values in sections.items():
        job.setdefault(section, {}).update(values)
    return LoraTrainer(parse_job_spec(job)).train()


@pytest.fixture(scope="module")
def trained(tiny_model: Path, style_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(tiny_model, style_dataset, tmp_path_factory.mktemp("run") / "out",
                 training_config={"max_steps": 24, "save_steps": 8, "lr_scheduler": "cosine", "lr_warmup_steps": 2,
                                  "learning_rate": 5e-3},
                 output={"formats": ["diffusers", "kohya", "peft"]})


def generate(pipe: Any) -> np.ndarray:
    return pipe("sks, a teal circle", num_inference_steps=3, height=64, width=64,
                generator=torch.Generator().manual_seed(0), output_type="np").images[0]


@pytest.fixture(scope="module")
def pipe(tiny_model: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model)


def test_run_writes_adapter_metrics_and_checkpoints(trained: TrainResult) -> None:
    files = {p.name for p in trained.adapter_dir.iterdir()}
    assert files == {"pytorch_lora_weights.safetensors", "test-style.safetensors", "adapter_model.safetensors",
                     "adapter_config.json", "training_summary.json", "job.yaml"}
    records = [json.loads(line) for line in trained.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 25))
    assert set(records[0]) == {"step", "epoch", "loss", "lr", "steps", "samples_trained", "step_seconds",
                               "samples_per_s", "peak_memory_bytes"}
    assert all(r["steps"] == 1 for r in records)  # on a CPU, one record per step
    assert records[0]["lr"] < records[2]["lr"]  # warm-up, then cosine decay
    assert records[-1]["lr"] < records[2]["lr"]
    summary = trained.summary
    assert summary["peak_memory_bytes"] == max(r["peak_memory_bytes"] for r in records) > 0
    assert summary["files"]["pytorch_lora_weights.safetensors"]["sha256"] == hashlib.sha256(
        (trained.adapter_dir / "pytorch_lora_weights.safetensors").read_bytes()).hexdigest()
    checkpoints = sorted(p.name for p in (trained.adapter_dir.parent / "checkpoints").iterdir())
    assert checkpoints == ["step-00000016", "step-00000024"]


def test_lora_lowers_the_loss_on_its_style(trained: TrainResult) -> None:
    effect = trained.summary["fixed_noise_loss"]
    assert effect["lora"] < effect["base"] * 0.98, effect
    assert effect["items"] == 12 and effect["seconds"] > 0  # every image: eval.max_compare_items is 16


def test_the_end_of_run_comparison_is_bounded_or_left_to_the_evaluate_stage(tiny_model: Path, style_dataset: Path,
                                                                            tmp_path: Path) -> None:
    bounded = train(tiny_model, style_dataset, tmp_path / "bounded", training_config={"max_steps": 1},
                    eval={"max_compare_items": 2})
    assert bounded.summary["fixed_noise_loss"]["items"] == 2
    skipped = train(tiny_model, style_dataset, tmp_path / "skipped",
                    training_config={"max_steps": 1, "compare_at_end": False})
    assert "fixed_noise_loss" not in skipped.summary


def test_diffusers_file_loads_cleanly_and_changes_the_image(trained: TrainResult, pipe: Any,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from diffusers.utils import logging as diffusers_logging
    from peft.utils import get_peft_model_state_dict

    before = generate(pipe)
    diffusers_logging.enable_propagation()  # diffusers' logger does not reach caplog by itself
    try:
        with caplog.at_level(logging.WARNING):
            pipe.load_lora_weights(trained.adapter_dir, weight_name="pytorch_lora_weights.safetensors",
                                   adapter_name="d")
    finally:
        diffusers_logging.disable_propagation()
    assert "unexpected keys" not in caplog.text and "missing keys" not in caplog.text
    exported = {k.removeprefix("unet.").replace(".lora.down.", ".lora_A.").replace(".lora.up.", ".lora_B."): v
                for k, v in load_file(trained.adapter_dir / "pytorch_lora_weights.safetensors").items()}
    loaded = get_peft_model_state_dict(pipe.unet, adapter_name="d")
    assert set(exported) == set(loaded)  # every LoRA layer landed, and nothing else was in the file
    assert all(torch.equal(exported[k], v) for k, v in loaded.items())
    after = generate(pipe)
    pipe.unload_lora_weights()
    assert np.abs(after - before).mean() > 1e-3
    assert np.array_equal(generate(pipe), before)


def test_kohya_file_gives_the_same_image_as_diffusers(trained: TrainResult, pipe: Any) -> None:
    pipe.load_lora_weights(trained.adapter_dir, weight_name="pytorch_lora_weights.safetensors", adapter_name="d")
    via_diffusers = generate(pipe)
    pipe.unload_lora_weights()
    pipe.load_lora_weights(trained.adapter_dir, weight_name="test-style.safetensors", adapter_name="k")
    via_kohya = generate(pipe)
    pipe.unload_lora_weights()
    np.testing.assert_allclose(via_kohya, via_diffusers, atol=1e-6)


def test_an_alpha_other_than_the_rank_scales_the_same_in_both_formats(tiny_model: Path, style_dataset: Path,
                                                                      tmp_path: Path, pipe: Any) -> None:
    result = train(tiny_model, style_dataset, tmp_path / "out", model_config={"lora_alpha": 2},
                   training_config={"max_steps": 6, "learning_rate": 5e-2, "save_steps": 100})
    images = {}
    for name in ("pytorch_lora_weights.safetensors", "test-style.safetensors"):
        pipe.load_lora_weights(result.adapter_dir, weight_name=name, adapter_name=name.split(".")[0].replace("-", "_"))
        images[name] = generate(pipe)
        pipe.unload_lora_weights()
    with safe_open(result.adapter_dir / "test-style.safetensors", "pt") as f:
        assert f.metadata()["ss_network_alpha"] == "2.0"
        alphas = [f.get_tensor(k).item() for k in list(f.keys()) if k.endswith(".alpha")]
    assert alphas and set(alphas) == {2.0}
    np.testing.assert_allclose(images["test-style.safetensors"], images["pytorch_lora_weights.safetensors"],
                               atol=1e-6)
    assert np.abs(images["test-style.safetensors"] - generate(pipe)).mean() > 1e-4  # the adapter did something


def test_kohya_keys_and_training_metadata(trained: TrainResult, tiny_model: Path) -> None:
    with safe_open(trained.adapter_dir / "test-style.safetensors", "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert {k.rsplit(".", 1)[-1] for k in keys} == {"alpha", "weight"}
    assert any(k.endswith(".lora_down.weight") for k in keys) and any(k.endswith(".lora_up.weight") for k in keys)
    weights = sorted(p for sub in ("unet", "vae", "text_encoder") for p in (tiny_model / sub).glob("*.safetensors"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in weights)).hexdigest()
    assert meta["ss_new_sd_model_hash"] == digest
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "4.0")
    assert (meta["ss_max_train_steps"], meta["ss_resolution"], meta["ss_num_train_images"]) == ("24", "(64, 64)", "12")
    assert json.loads(meta["ss_tag_frequency"])["3_sks"]["sks"] == 12
    assert meta["ss_network_module"] == "networks.lora"
    assert (meta["ss_base_model_version"], meta["ss_v2"], meta["ss_v_parameterization"]) == ("sd_v1", "False", "False")
    assert (meta["modelspec.architecture"], meta["modelspec.prediction_type"]) == ("stable-diffusion-v1/lora",
                                                                                  "epsilon")
    assert a1111_version(meta) == "SD1"


def a1111_version(metadata: dict[str, str]) -> str:
    """AUTOMATIC1111's ``NetworkOnDisk.detect_version`` (extensions-builtin/Lora/network.py), restated."""
    if str(metadata.get("ss_base_model_version", "")).startswith("sdxl_"):
        return "SDXL"
    if str(metadata.get("ss_v2", "")) == "True":
        return "SD2"
    return "SD1" if metadata else "Unknown"


@pytest.mark.parametrize(("arch", "version", "architecture", "prediction"), [
    ("tiny-sd2", "sd_v2", "stable-diffusion-v2-512/lora", "epsilon"),
    ("tiny-sd2-v", "sd_v2_v", "stable-diffusion-v2-768-v/lora", "v"),
])
def test_an_sd2_adapter_says_so_as_webui_and_kohya_read_it(style_dataset: Path, tmp_path: Path, arch: str,
                                                           version: str, architecture: str, prediction: str) -> None:
    from diffusers import StableDiffusionPipeline

    from lora_tasks.tiny.diffusion import save_pipeline

    model = save_pipeline(tmp_path / arch, arch, seed=0)
    result = train(model, style_dataset, tmp_path / "out", training_config={"max_steps": 2},
                   output={"formats": ["diffusers", "kohya"]})
    with safe_open(result.adapter_dir / "test-style.safetensors", "pt") as f:
        meta = f.metadata()
    assert (meta["ss_base_model_version"], meta["ss_v2"]) == (version, "True")
    assert meta["ss_v_parameterization"] == str(prediction == "v")
    assert (meta["modelspec.architecture"], meta["modelspec.prediction_type"]) == (architecture, prediction)
    assert a1111_version(meta) == "SD2"
    pipe = StableDiffusionPipeline.from_pretrained(model)  # and the kohya file loads into the SD 2.x pipeline
    pipe.load_lora_weights(result.adapter_dir, weight_name="test-style.safetensors")
    assert pipe.get_list_adapters()["unet"]


def test_peft_format_loads_into_a_fresh_unet(trained: TrainResult, tiny_model: Path) -> None:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    config = LoraConfig.from_pretrained(trained.adapter_dir)
    assert (config.r, config.lora_alpha) == (4, 4.0)
    unet = inject_adapter_in_model(config, UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet"))
    result = set_peft_model_state_dict(unet, load_file(trained.adapter_dir / "adapter_model.safetensors"))
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if "lora_" in k]


def test_rerunning_a_finished_job_returns_it_without_training(trained: TrainResult, tiny_model: Path,
                                                              style_dataset: Path) -> None:
    metrics_before = trained.metrics_path.read_bytes()
    again = train(tiny_model, style_dataset, trained.adapter_dir.parent,
                  training_config={"max_steps": 24, "save_steps": 8, "lr_scheduler": "cosine", "lr_warmup_steps": 2,
                                  "learning_rate": 5e-3},
                  output={"formats": ["diffusers", "kohya", "peft"]})
    assert again.summary == trained.summary
    assert trained.metrics_path.read_bytes() == metrics_before


def test_a_batch_size_over_the_largest_bucket_is_clamped_and_what_ran_is_reported(
        tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"].update(max_steps=3, batch_size=100)
    job["output"]["formats"] = ["kohya"]
    trainer = LoraTrainer(parse_job_spec(job))
    result = trainer.train()
    samples: dict[tuple[int, int], int] = {}
    for bucket, repeats in zip(trainer.task.buckets, trainer.task.repeats, strict=True):
        samples[bucket] = samples.get(bucket, 0) + repeats
    largest = max(samples.values())
    assert largest < 100
    assert result.summary["settings"]["batch_size"] == largest
    warning = next(w for w in result.summary["warnings"] if "batch_size 100" in w)
    assert f"batches hold at most {largest}" in warning and f"Fix: set batch_size to {largest} or less" in warning
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert all(0 < r["samples_trained"] <= largest for r in records)  # one step a record on a CPU
    assert all(r["samples_per_s"] == pytest.approx(r["samples_trained"] / r["step_seconds"]) for r in records)
    trained = sum(r["samples_trained"] for r in records)
    assert result.summary["settings"]["mean_batch_size"] == pytest.approx(trained / 3)
    with safe_open(result.adapter_dir / "test-style.safetensors", "pt") as kohya:
        assert kohya.metadata()["ss_batch_size_per_device"] == str(largest)


def test_buckets_smaller_than_a_batch_are_named(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"]["batch_size"] = 4
    trainer = LoraTrainer(parse_job_spec(job))
    trainer._fit_batch_size({(64, 64): 9, (72, 56): 3, (56, 72): 1})
    assert trainer.settings.batch_size == 4  # the largest bucket holds more: nothing to clamp
    [warning] = trainer.warnings[-1:]
    assert warning.startswith("2 of 3 buckets hold fewer samples an epoch than a batch (56x72: 1, 72x56: 3)")


def test_images_smaller_than_the_resolution_are_reported_or_refused(tiny_model: Path, style_dataset: Path,
                                                                    tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"]["resolution"] = 128  # every image of the style set is smaller
    trainer = LoraTrainer(parse_job_spec(job))
    trainer.prepare()
    warning = next(w for w in trainer.warnings if "smaller than their training bucket" in w)
    assert warning.startswith("12 of 12 images") and "64x64 (bucket 128x128)" in warning and "upscaled" in warning
    job["training_config"]["allow_upscale"] = False
    refused = LoraTrainer(parse_job_spec(job))
    with pytest.raises(DatasetError, match=r"12 of 12 images are smaller .*allow_upscale is false"):
        refused.train()
    assert not hasattr(refused.task, "models")  # refused from the configs, before any weight was loaded
    assert not (tmp_path / "out" / "adapter").exists()


def test_samples_during_training_are_written_listed_and_change_nothing(tiny_model: Path, style_dataset: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from lora_tasks.train.image_task import ImageTask

    real_sample = ImageTask.sample

    def careless_sampler(task: ImageTask, step: int) -> list[str]:  # a sampler drawing from the global RNG
        torch.rand(8)
        return real_sample(task, step)

    monkeypatch.setattr(ImageTask, "sample", careless_sampler)
    common = {"max_steps": 6, "save_steps": 3}
    plain = train(tiny_model, style_dataset, tmp_path / "plain", training_config=common,
                  model_config={"lora_dropout": 0.1}, dataset={"caption_dropout": 0.2})
    sampled = train(tiny_model, style_dataset, tmp_path / "sampled",
                    training_config={**common, "sample_every_n_steps": 4, "sample_prompts": ["sks, a teal circle",
                                                                                             "a teal square"]},
                    model_config={"lora_dropout": 0.1}, dataset={"caption_dropout": 0.2},
                    eval={"sample_steps": 8, "sample_size": 64})  # sampling takes several steps' time
    weights = "pytorch_lora_weights.safetensors"
    plain_tensors, sampled_tensors = load_file(plain.adapter_dir / weights), load_file(sampled.adapter_dir / weights)
    assert plain_tensors.keys() == sampled_tensors.keys()
    assert all(torch.equal(plain_tensors[k], sampled_tensors[k]) for k in plain_tensors)  # dropout draws intact
    records = [json.loads(line) for line in sampled.metrics_path.read_text().splitlines()]
    listed = {r["step"]: r["sample_images"] for r in records if "sample_images" in r}
    assert listed == {4: ["samples/step-00000004-00.png", "samples/step-00000004-01.png"],
                      6: ["samples/step-00000006-00.png", "samples/step-00000006-01.png"]}  # and at the last step
    for name in listed[4] + listed[6]:
        with Image.open(sampled.adapter_dir.parent / name) as image:
            assert image.size == (64, 64)
    by_step = {r["step"]: r for r in records}
    assert by_step[5]["step_seconds"] < by_step[4]["sample_seconds"]  # the step after sampling is timed alone
    facts = sampled.summary["training_samples"]
    assert facts["steps"] == [4, 6] and facts["images"] == 4 and facts["seconds_per_image"] > 0
    with Image.open(sampled.adapter_dir / "training_samples.png") as grid:
        assert grid.height > 2 * 64 and grid.width > 2 * 64  # a row per sampled step, a column per prompt
    assert "training_samples" not in plain.summary and not (plain.adapter_dir / "training_samples.png").exists()


def test_sampling_is_left_out_of_the_step_times(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    from lora_tasks.train.metrics import MetricsLog

    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"].update(max_steps=4, sample_every_n_steps=2)
    job["eval"] = {"sample_steps": 8, "sample_size": 64}
    trainer = LoraTrainer(parse_job_spec(job))
    trainer.prepare()
    trainer.metrics = MetricsLog(trainer.metrics_path, 0)
    durations = trainer.loop(0, 4)
    trainer.metrics.close()
    sampled = [json.loads(line)["sample_seconds"] for line in trainer.metrics_path.read_text().splitlines()
               if "sample_seconds" in line]
    assert len(sampled) == 2 and max(durations) < min(sampled)  # step 3 starts its clock after step 2's samples


def test_default_training_sample_prompts_and_nothing_to_sample(tiny_model: Path, style_dataset: Path,
                                                              tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"]["sample_every_n_steps"] = 5
    job["eval"] = {"max_prompts": 2, "seed": 7}
    trainer = LoraTrainer(parse_job_spec(job))
    trainer.prepare()
    prompts = trainer.task.sample_prompts
    captions = list(dict.fromkeys(item.caption for item in trainer.task.items))
    assert [p.text for p in prompts] == captions[:2] and all(p.text.startswith("sks") for p in prompts)
    assert [p.seed for p in prompts] == [7, 8]
    bare = tmp_path / "bare"
    bare.mkdir()
    for image in sorted(style_dataset.rglob("*.png"))[:4]:
        shutil.copy(image, bare / f"{len(list(bare.iterdir()))}.png")
        (bare / f"{len(list(bare.iterdir())) - 1}.txt").write_text("")  # an empty caption beside each image
    job = base_job(tiny_model, bare, tmp_path / "out2")
    job["dataset"]["trigger_word"] = None
    job["training_config"]["sample_every_n_steps"] = 5
    trainer = LoraTrainer(parse_job_spec(job))
    trainer.prepare()
    assert trainer.task.sample_prompts == []
    assert any("there is nothing to sample" in w and "sample_prompts" in w for w in trainer.warnings)


def test_export_failure_leaves_no_adapter(tiny_model: Path, style_dataset: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_: Any, **__: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lora_tasks.train.export.kohya_state_dict", disk_full)
    with pytest.raises(OSError, match="No space"):
        train(tiny_model, style_dataset, tmp_path / "out", training_config={"max_steps": 2})
    assert not [p for p in (tmp_path / "out").iterdir() if "adapter" in p.name]
    assert not list((tmp_path / "out").rglob("pytorch_lora_weights.safetensors"))


KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
from lora_tasks.train.export import export_adapter

def write(folder):
    (folder / "pytorch_lora_weights.safetensors").write_bytes(b"half written")
    os.kill(os.getpid(), signal.SIGKILL)

export_adapter(Path(sys.argv[1]), write, lambda folder: {})
"""


def test_an_export_killed_by_sigkill_leaves_nothing_after_the_next_run(tiny_model: Path, style_dataset: Path,
                                                                       tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(out)], check=False)
    assert killed.returncode == -9
    assert [p.name for p in out.glob(".adapter.partial-*")]  # another process's leftover, not ours
    result = train(tiny_model, style_dataset, out, training_config={"max_steps": 2})
    assert sorted(p.name for p in out.iterdir() if "adapter" in p.name) == ["adapter"]
    assert (result.adapter_dir / "training_summary.json").is_file()


def test_undecodable_image_fails_before_training_with_no_adapter(tiny_model: Path, style_dataset: Path,
                                                                 tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(style_dataset, data)
    victim = sorted(data.rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:120])  # header intact, pixels truncated
    with pytest.raises(DatasetError, match=victim.name):
        train(tiny_model, data, tmp_path / "out")
    assert not (tmp_path / "out" / "adapter").exists()


def test_second_run_on_the_same_output_is_refused(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with (out / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LoraTaskError, match="another training run is writing"):
            train(tiny_model, style_dataset, out)


@pytest.mark.parametrize("mode", ["disk", "off"])
def test_latent_cache_modes_train_the_same_adapter(tiny_model: Path, style_dataset: Path, tmp_path: Path,
                                                   mode: str) -> None:
    memory = train(tiny_model, style_dataset, tmp_path / "memory", training_config={"max_steps": 3})
    other = train(tiny_model, style_dataset, tmp_path / mode, training_config={"max_steps": 3, "latent_cache": mode})
    a = load_file(memory.adapter_dir / "pytorch_lora_weights.safetensors")
    b = load_file(other.adapter_dir / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)
    if mode == "disk":
        assert len(list((tmp_path / "disk" / "cache").glob("*.safetensors"))) == 12


def test_single_file_base_model_trains(single_file: Path, tiny_model: Path, style_dataset: Path,
                                       tmp_path: Path) -> None:
    job = base_job(single_file, style_dataset, tmp_path / "out")
    job["model_config"]["base_model_config"] = str(tiny_model)
    job["training_config"]["max_steps"] = 2
    result = LoraTrainer(parse_job_spec(job)).train()
    assert result.summary["base_model"]["kind"] == "single_file"
    same = train(tiny_model, style_dataset, tmp_path / "from-folder", training_config={"max_steps": 2})
    a, b = (load_file(r.adapter_dir / "pytorch_lora_weights.safetensors") for r in (result, same))
    assert a.keys() == b.keys()  # the checkpoint's UNet is the folder's: the same seed learns the same adapter
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-5)


def test_dora_trains_and_reloads_to_the_trainers_outputs(trained: TrainResult, tiny_model: Path,
                                                         style_dataset: Path, tmp_path: Path) -> None:
    from diffusers import StableDiffusionPipeline

    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["model_config"]["method"] = "dora"
    job["training_config"].update(max_steps=4, learning_rate=5e-3)
    job["output"] = {**job.get("output", {}), "formats": ["diffusers", "kohya", "peft"]}
    trainer = LoraTrainer(parse_job_spec(job))
    result = trainer.train()
    assert not (result.adapter_dir / "test-style.safetensors").exists()  # no kohya reading gives this DoRA: not written
    assert any("so kohya is not written; diffusers, peft are written" in w for w in result.summary["warnings"])
    state = load_file(result.adapter_dir / "pytorch_lora_weights.safetensors")
    plain = load_file(trained.adapter_dir / "pytorch_lora_weights.safetensors")
    assert any("magnitude" in k for k in state) and not any("magnitude" in k for k in plain)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model)
    base = unet_output(pipe.unet)
    pipe.load_lora_weights(result.adapter_dir, weight_name="pytorch_lora_weights.safetensors", adapter_name="dora")
    reloaded, trainers = unet_output(pipe.unet), unet_output(trainer.task.module)
    torch.testing.assert_close(reloaded, trainers, rtol=1e-5, atol=1e-6)  # loaded as DoRA, not as a plain LoRA
    assert not torch.allclose(reloaded, base, atol=1e-4)


def unet_output(unet: Any) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((1, unet.config.in_channels, 8, 8), generator=generator)
    text = torch.randn((1, 77, unet.config.cross_attention_dim), generator=generator)
    with torch.no_grad():
        return unet(latents, torch.tensor([500]), text, return_dict=False)[0]


def test_pickled_weights_refused_then_loaded_weights_only(tiny_model: Path, style_dataset: Path,
                                                          tmp_path: Path) -> None:
    model = tmp_path / "bin-model"
    shutil.copytree(tiny_model, model)
    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()
    with pytest.raises(UnsafeFileError, match=r"diffusion_pytorch_model\.bin is a pickled checkpoint"):
        train(model, style_dataset, tmp_path / "refused")
    result = train(model, style_dataset, tmp_path / "allowed", model_config={"allow_pickle": True},
                   training_config={"max_steps": 1})
    assert result.adapter_dir.is_dir()


def test_malicious_pickle_is_not_executed(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    model = tmp_path / "evil-model"
    shutil.copytree(tiny_model, model)
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (model / "unet" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": Exploit()}))
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        train(model, style_dataset, tmp_path / "out", model_config={"allow_pickle": True})
    assert not marker.exists()


def test_hub_id_without_network_fails_clearly(style_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"someorg/no-such-model could not be loaded.*network access"):
        train(Path("someorg/no-such-model"), style_dataset, tmp_path / "out")


def test_gradient_checkpointing_gives_the_same_adapter(tiny_model: Path, style_dataset: Path,
                                                       tmp_path: Path) -> None:
    plain = train(tiny_model, style_dataset, tmp_path / "plain", training_config={"max_steps": 3})
    recomputed = train(tiny_model, style_dataset, tmp_path / "ckpt",
                       training_config={"max_steps": 3, "gradient_checkpointing": True})
    assert recomputed.summary["settings"]["gradient_checkpointing"] is True
    a = load_file(plain.adapter_dir / "pytorch_lora_weights.safetensors")
    b = load_file(recomputed.adapter_dir / "pytorch_lora_weights.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_bf16_keeps_frozen_weights_half_and_lora_weights_fp32(tiny_model: Path, style_dataset: Path,
                                                               tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"].update({"mixed_precision": "bf16", "max_steps": 2})
    trainer = LoraTrainer(parse_job_spec(job), device="cpu")
    result = trainer.train()
    unet = trainer.task.models.unet
    assert unet.conv_in.weight.dtype == torch.bfloat16
    assert {p.dtype for p in trainer.params.values()} == {torch.float32}
    assert result.summary["settings"]["precision"] == "bf16"
    exported = load_file(result.adapter_dir / "pytorch_lora_weights.safetensors")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in exported.values())


def test_half_precision_needs_a_gpu(tiny_model: Path, style_dataset: Path, tmp_path: Path) -> None:
    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"]["mixed_precision"] = "fp16"  # loss scaling is CUDA's; bf16 runs on a CPU
    with pytest.raises(JobSpecError, match=r"mixed_precision.*needs a CUDA GPU"):
        LoraTrainer(parse_job_spec(job), device="cpu")


def test_resume_from_something_that_is_not_a_checkpoint(tiny_model: Path, style_dataset: Path,
                                                       tmp_path: Path) -> None:
    spec = parse_job_spec(base_job(tiny_model, style_dataset, tmp_path / "out"))
    with pytest.raises(LoraTaskError, match=r"is not a checkpoint folder"):
        LoraTrainer(spec).train(resume=str(tmp_path))


def test_an_image_job_wants_a_diffusion_pipeline(tiny_llm: Path) -> None:
    spec = parse_job_spec({"model_config": {"base_model": str(tiny_llm)}})
    with pytest.raises(JobSpecError, match="is a folder but not a diffusers pipeline"):
        LoraTrainer(spec)


def test_no_dataset_is_a_clear_error(tiny_model: Path) -> None:
    spec = parse_job_spec({"model_config": {"base_model": str(tiny_model)}})
    with pytest.raises(DatasetError, match="no dataset given"):
        LoraTrainer(spec)


def test_the_loss_is_read_from_the_device_only_when_it_is_logged(tiny_model: Path, style_dataset: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU every ``.item()`` makes the host wait for the device; the loop reads the loss once
    per metrics record, as the mean of the steps since the last one."""
    from lora_tasks.train.metrics import MetricsLog, read_metrics

    job = base_job(tiny_model, style_dataset, tmp_path / "out")
    job["training_config"].update({"max_steps": 12, "save_steps": 100, "logging_steps": 4})
    trainer = LoraTrainer(parse_job_spec(job), device="cpu")
    trainer.prepare()
    trainer.metrics = MetricsLog(trainer.metrics_path, 0)
    reads, item = [], torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda tensor: reads.append(tensor.shape) or item(tensor))
    trainer.loop(0, 8)
    trainer.metrics.close()
    assert len(reads) == 2  # two records, no read in the steps between
    records = read_metrics(trainer.metrics_path)
    assert [(r["step"], r["steps"]) for r in records] == [(4, 4), (8, 4)]
    assert all(np.isfinite(r["loss"]) and r["step_seconds"] > 0 for r in records)
