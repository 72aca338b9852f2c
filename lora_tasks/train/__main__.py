"""Command line: ``python -m lora_tasks.train --config job.yaml [--dataset DIR] [--output DIR]``.

Exit status 0 on success, 2 when the input needs fixing (the message says how), 1 on a bug.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_tasks.cli import entry_point
from lora_tasks.spec.loading import load_job_spec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.train", description="Train an image or text LoRA.")
    parser.add_argument("--config", required=True, type=Path, help="job spec YAML")
    parser.add_argument("--dataset", type=Path, help="image folder, or text file or folder (overrides dataset.uri)")
    parser.add_argument("--output", type=Path, help="output folder (overrides output.uri)")
    parser.add_argument("--resume", default="auto",
                        help="'auto' (newest complete checkpoint, the default), 'none', or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a spec value, e.g. --set training_config.max_steps=50")
    parser.add_argument("--device", help="'cpu' or 'cuda' (default: cuda when available)")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from lora_tasks.train.trainer import LoraTrainer

    spec = load_job_spec(args.config, args.overrides)
    result = LoraTrainer(spec, args.dataset, args.output, args.device).train(args.resume)
    summary = result.summary
    loss, lora = summary["train_loss"], summary["lora"]
    print(f"adapter:      {result.adapter_dir}")
    for path in sorted(result.adapter_dir.iterdir()):
        print(f"  {path.name}")
    print(f"metrics:      {result.metrics_path}")
    print(f"LoRA:         {lora['parameters']:,} trainable parameters on {', '.join(lora['target_modules'])}, "
          f"{100 * lora['share']:.4f}% of the base model's {lora['model_parameters']:,}")
    print(f"train loss:   {loss['first']:.4f} (first 10% of steps) -> {loss['last']:.4f} (last 10%)")
    for key, what in (("fixed_noise_loss", "fixed-noise loss on training images"),
                      ("token_loss", "next-token loss on training examples")):
        if key in summary:
            effect = summary[key]
            print(f"{what}: base {effect['base']:.4f} -> with LoRA {effect['lora']:.4f} ({effect['items']} "
                  f"compared in {effect['seconds']:.1f} s)")
    print(f"steps:        {summary['steps']} in {summary['epochs']} epoch(s), median "
          f"{summary['median_step_seconds']:.3f} s/step")
    print(f"peak memory:  {summary['peak_memory_bytes'] / 2**20:.0f} MiB ({summary['settings']['device']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
