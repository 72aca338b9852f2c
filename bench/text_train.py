"""The text trainer against the bare training step, and the text memory model against measured peaks.

Throughput: the trainer (``LoraTrainer.loop``: batching, autocast, clipping, schedule, metrics and
progress included) and a bare loop of model forward + backward + AdamW step over the very batches the
trainer draws, on the same model, in alternating rounds; tokens are the batches' non-padding tokens. The
ratio is bare tokens/s over the trainer's (the goal: at most 1.10), medians over rounds.

Memory: each configuration trains a few steps in a fresh process on this machine's CPU, on packed rows
of ``max_length`` tokens; its peak (the process's peak RSS, from the trainer's metrics) is compared with
``estimate_text_peak_memory``. The activation factor was fitted on ``TEXT_CALIBRATED_ON``; the held-out
rows differ in model size, row length, batch and rank. ``--fit`` prints the factor this run's fit rows
give. Models are Llama-architecture with random weights, built offline with the tiny model's tokenizer.

    python bench/text_train.py [--rounds 5] [--fit]
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARCHITECTURES = {  # Llama shapes, beside the tiny model (hidden 64, 2 layers, vocab 512)
    "llm-s": {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 8000},
    "llm-m": {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6, "num_attention_heads": 8,
              "num_key_value_heads": 4, "vocab_size": 32000},
    "llm-l": {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 12,
              "num_key_value_heads": 4, "vocab_size": 32000},
}
HELD_OUT = [("tiny", 128, 4, 4), ("llm-s", 512, 2, 16), ("llm-m", 128, 8, 8), ("llm-l", 256, 2, 8)]
"""(architecture, tokens a row, batch, rank): none was used to fit the factor."""
THROUGHPUT = ("llm-s", 256, 4, 8)
STEPS = 4


def build_models(root: Path) -> dict[str, Path]:
    """The tiny model and the bench's larger shapes, saved like a hub checkpoint."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lora_tasks.tiny.llm import build_llm

    tiny = build_llm(root / "tiny", seed=0)
    folders = {"tiny": tiny}
    for name, shape in ARCHITECTURES.items():
        folder = root / name
        config = LlamaConfig(**shape, max_position_embeddings=1024, tie_word_embeddings=False,
                             bos_token_id=1, eos_token_id=2, pad_token_id=3)
        LlamaForCausalLM(config).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny).save_pretrained(folder)
        folders[name] = folder
    return folders


def dataset(root: Path, count: int = 400) -> Path:
    from lora_tasks.tiny.text_data import write_text_dataset

    return write_text_dataset(root / "data", count=count, layout="text")


def job(model: Path, data: Path, out: Path, tokens: int, batch: int, rank: int, steps: int) -> dict[str, Any]:
    return {"job": {"name": "bench", "task": "text"}, "dataset": {"uri": str(data)},
            "model_config": {"base_model": str(model), "lora_rank": rank},
            "training_config": {"max_steps": steps, "batch_size": batch, "max_length": tokens, "packing": True,
                                "save_steps": 100_000, "learning_rate": 1e-4, "mixed_precision": "no"},
            "eval": {"holdout_fraction": 0.0}, "output": {"uri": str(out)}}


def measure_peak(model: Path, data: Path, work: Path, tokens: int, batch: int, rank: int) -> int:
    """Train in a fresh process (RSS peaks are per process); returns its peak from the metrics log."""
    config = work / "job.yaml"
    config.write_text(yaml.safe_dump(job(model, data, work / "out", tokens, batch, rank, STEPS)))
    subprocess.run([sys.executable, "-m", "lora_tasks.train", "--config", str(config), "--device", "cpu"],
                   check=True, capture_output=True, cwd=ROOT)
    records = [json.loads(line) for line in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    return max(r["peak_memory_bytes"] for r in records)


def estimate(model: Path, tokens: int, batch: int, rank: int) -> dict[str, int]:
    from lora_tasks.scheduling.text_memory import TextShape, estimate_text_peak_memory

    config = json.loads((model / "config.json").read_text())
    shape = TextShape(tokens, batch, "no", False, rank, ("q_proj", "v_proj"))
    return estimate_text_peak_memory(config, shape, "cpu").parts


def throughput(model: Path, data: Path, work: Path, rounds: int) -> dict[str, float]:
    """Median tokens/s of the trainer's loop and of the bare step over the same batches."""
    from lora_tasks.spec.loading import parse_job_spec
    from lora_tasks.train.metrics import MetricsLog
    from lora_tasks.train.trainer import LoraTrainer

    _, tokens, batch, rank = THROUGHPUT
    trainer = LoraTrainer(parse_job_spec(job(model, data, work / "out", tokens, batch, rank, 10_000)), device="cpu")
    trainer.prepare()
    trainer.metrics = MetricsLog(trainer.metrics_path, 0)
    task, model_, optimizer = trainer.task, trainer.task.module, trainer.optimizer
    rates: dict[str, list[float]] = {"trainer": [], "bare": []}
    step = 0
    for _ in range(rounds):
        probe = copy.deepcopy(trainer.stream)  # the batches the trainer is about to draw
        drawn = [probe.next() for _ in range(STEPS)]
        count = sum(len(example.input_ids) for indices in drawn for i in indices for example in task.units[i])
        start = time.perf_counter()
        trainer.loop(step, step + STEPS)
        rates["trainer"].append(count / (time.perf_counter() - start))
        step += STEPS
        batches = [task.batch(indices) for indices in drawn]
        start = time.perf_counter()
        for tensors in batches:
            model_(**tensors).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        rates["bare"].append(count / (time.perf_counter() - start))
    trainer.metrics.close()
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    from lora_tasks.scheduling.text_memory import TEXT_ACTIVATION_FACTOR, TEXT_CALIBRATED_ON

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fit", action="store_true", help="print the activation factor this run's fit rows give")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="text-bench-"))
    try:
        models = build_models(work / "models")
        data = dataset(work)
        rates = throughput(models[THROUGHPUT[0]], data, work / "throughput", args.rounds)
        ratio = rates["bare"] / rates["trainer"]
        arch, tokens, batch, rank = THROUGHPUT
        print(f"throughput ({arch}, {batch} x {tokens} tokens, rank {rank}, CPU, median of {args.rounds} rounds):")
        print(f"  trainer {rates['trainer']:.0f} tokens/s, bare forward+backward+step {rates['bare']:.0f} tokens/s")
        print(f"{'ok  ' if ratio <= 1.10 else 'FAIL'} bare / trainer tokens per second {ratio:.3f} (goal <= 1.10)")
        rows, fits = [], []
        for group, configs in (("fit", TEXT_CALIBRATED_ON), ("held out", HELD_OUT)):
            for arch, tokens, batch, rank in configs:
                folder = work / f"{arch}-{tokens}-{batch}-{rank}"
                folder.mkdir()
                measured = measure_peak(models[arch], data, folder, tokens, batch, rank)
                parts = estimate(models[arch], tokens, batch, rank)
                total = sum(parts.values())
                rows.append((group, arch, tokens, batch, rank, measured, total))
                if group == "fit":
                    rest = total - parts["activations"]
                    fits.append((measured - rest) / (parts["activations"] / TEXT_ACTIVATION_FACTOR))
                shutil.rmtree(folder)
        if args.fit:
            print(f"activation factor this run's fit rows give: {statistics.mean(fits):.3f} "
                  f"(in use: {TEXT_ACTIVATION_FACTOR})")
        print("| set | model | tokens | batch | rank | measured peak | estimate | error |")
        print("|---|---|---|---|---|---|---|---|")
        worst = {"fit": 0.0, "held out": 0.0}
        for group, arch, tokens, batch, rank, measured, total in rows:
            error = total / measured - 1
            worst[group] = max(worst[group], abs(error))
            print(f"| {group} | {arch} | {tokens} | {batch} | {rank} | {measured / 2**20:.0f} MiB | "
                  f"{total / 2**20:.0f} MiB | {error:+.1%} |")
        print(f"{'ok  ' if worst['held out'] <= 0.20 else 'FAIL'} every held-out text estimate within 20% of its "
              "measured peak")
        print(f"text_max_error_in_sample {worst['fit']:.3f}")
        print(f"text_max_error {worst['held out']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
