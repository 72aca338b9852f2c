"""Command line for the offline models and data: ``python -m lora_tasks.tiny --help``."""

from __future__ import annotations

import argparse
from pathlib import Path

import lora_tasks.tiny
from lora_tasks.cli import entry_point
from lora_tasks.tiny.diffusion import ARCHITECTURES
from lora_tasks.tiny.text_data import LAYOUTS


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_tasks.tiny",
                                     description=str(lora_tasks.tiny.__doc__).split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model", help="build and save a random-weight pipeline")
    model.add_argument("out", type=Path)
    model.add_argument("--arch", choices=sorted(ARCHITECTURES), default="tiny")
    model.add_argument("--seed", type=int, default=0)
    blip = sub.add_parser("blip", help="build and save a tiny random BLIP image captioner")
    blip.add_argument("out", type=Path)
    blip.add_argument("--seed", type=int, default=0)
    clip = sub.add_parser("clip", help="build and save a tiny random CLIP model (the evaluate stage's CLIP score)")
    clip.add_argument("out", type=Path)
    clip.add_argument("--seed", type=int, default=0)
    llm = sub.add_parser("llm", help="build and save a tiny random Llama-architecture causal LM and its tokenizer")
    llm.add_argument("out", type=Path)
    llm.add_argument("--seed", type=int, default=0)
    text = sub.add_parser("text-dataset", help="write a small text dataset with one writing style")
    text.add_argument("out", type=Path)
    text.add_argument("--layout", choices=LAYOUTS, default="messages")
    text.add_argument("--count", type=int, default=64)
    text.add_argument("--seed", type=int, default=0)
    data = sub.add_parser("dataset", help="write a small captioned image dataset with one visual style")
    data.add_argument("out", type=Path)
    data.add_argument("--count", type=int, default=24)
    data.add_argument("--seed", type=int, default=0)
    single = sub.add_parser("single-file", help="write a diffusers folder as one original-layout checkpoint")
    single.add_argument("pipeline_dir", type=Path)
    single.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.what == "model":
        from lora_tasks.tiny.diffusion import save_pipeline

        print(save_pipeline(args.out, args.arch, args.seed))
    elif args.what == "blip":
        from lora_tasks.tiny.blip import build_blip

        print(build_blip(args.out, args.seed))
    elif args.what == "clip":
        from lora_tasks.tiny.clip import build_clip

        print(build_clip(args.out, args.seed))
    elif args.what == "llm":
        from lora_tasks.tiny.llm import build_llm

        print(build_llm(args.out, args.seed))
    elif args.what == "text-dataset":
        from lora_tasks.tiny.text_data import write_text_dataset

        print(write_text_dataset(args.out, args.count, args.seed, args.layout))
    elif args.what == "dataset":
        from lora_tasks.tiny.sample_data import make_style_dataset

        print(make_style_dataset(args.out, args.count, args.seed))
    else:
        from lora_tasks.tiny.single_file import pipeline_to_single_file

        print(pipeline_to_single_file(args.pipeline_dir, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
