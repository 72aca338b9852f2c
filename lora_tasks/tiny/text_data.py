"""A small text corpus with one learnable style, generated from templates with a seed: support answers
that always open with a greeting, sign off the same way and speak like a ship's crew. A LoRA on a tiny
language model learns that style in a few hundred steps, as an image LoRA learns a teal circle.

The same generator gives the tokenizer its training text, so nothing is downloaded or bundled."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

TOPICS = ("password", "invoice", "account", "order", "refund", "delivery", "subscription", "email address",
          "billing plan", "login", "download", "receipt", "card", "profile", "team seat", "export")
ASKS = ("How do I change my {t}?", "Where can I find my {t}?", "Why was my {t} rejected?",
        "Can you help me with my {t}?", "My {t} does not work, what now?", "Is my {t} safe?",
        "How long does a new {t} take?", "Who can see my {t}?")
STEPS = ("open the settings page", "pick the {t} tab", "press the save button", "wait for the email",
         "sign in again", "check the spam folder", "ask your team admin", "try a second browser")
GREETINGS = ("Ahoy, matey!", "Ahoy there, sailor!", "Ahoy, friend of the sea!")
SIGN_OFF = "Fair winds, the crew."
PLAIN = ("Hello.", "Hi there.", "Good day.")
"""The base corpus answers plainly: the style is what the adapter has to learn."""
SYSTEM = "You are the support assistant of a small software company."
LAYOUTS = ("messages", "prompt_completion", "text", "txt")


def style_pairs(count: int, seed: int = 0, styled: bool = True) -> Iterator[tuple[str, str]]:
    """(question, answer) pairs; ``styled`` answers in the crew's voice, otherwise plainly."""
    rng = random.Random(seed)
    for _ in range(count):
        topic = rng.choice(TOPICS)
        question = rng.choice(ASKS).format(t=topic)
        steps = [s.format(t=topic) for s in rng.sample(STEPS, 2)]
        if styled:
            answer = (f"{rng.choice(GREETINGS)} To sort yer {topic}, {steps[0]}, then {steps[1]}, arr. "
                      f"{SIGN_OFF}")
        else:
            answer = f"{rng.choice(PLAIN)} To fix your {topic}, {steps[0]}, then {steps[1]}. Thank you."
        yield question, answer


def tokenizer_corpus(seed: int = 0) -> Iterator[str]:
    """Text the tokenizer is trained on: both voices, so both tokenize well."""
    for styled in (True, False):
        for question, answer in style_pairs(400, seed + styled, styled):
            yield f"{question} {answer}"


def write_text_dataset(out: Path, count: int = 64, seed: int = 0, layout: str = "messages") -> Path:
    """The styled pairs as ``train.jsonl`` in one of the layouts TRL's SFT trainer reads: ``text`` (one
    field), ``prompt_completion`` or chat ``messages``; ``txt`` writes ``train.txt``, one example a line."""
    out.mkdir(parents=True, exist_ok=True)
    pairs = list(style_pairs(count, seed))
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if layout == "txt":
        path = out / "train.txt"
        path.write_text("".join(f"{q} {a}\n" for q, a in pairs), encoding="utf-8")
        return path
    rows = {
        "text": lambda q, a: {"text": f"{q} {a}"},
        "prompt_completion": lambda q, a: {"prompt": q, "completion": a},
        "messages": lambda q, a: {"messages": [{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": q},
                                               {"role": "assistant", "content": a}]},
    }
    path = out / "train.jsonl"
    path.write_text("".join(json.dumps(rows[layout](q, a)) + "\n" for q, a in pairs), encoding="utf-8")
    return path
