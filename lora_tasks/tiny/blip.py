"""A tiny random BLIP image captioner, saved like a real one, for the caption stage's tests and demo."""

from __future__ import annotations

from pathlib import Path

CAPTION_WORDS = """a the of in on with and near under over two three small large red blue green yellow white black
teal orange purple striped round square triangle circle shape shapes sky sunset sea tree trees house street man woman
dog cat bird car boat flower flowers mountain field light dark bright pattern painting drawing photo picture style
outline stripes background sitting standing flying""".split()  # noqa: SIM905 - reads better as prose
"""The tiny captioner's vocabulary: a random model over real words still yields readable captions."""


def build_blip(out: Path, seed: int = 0) -> Path:
    """A tiny random BLIP captioner (BlipForConditionalGeneration + BlipProcessor) saved to ``out``.

    Random BLIP weights make near-constant captions unless the vision tower's init is
    widened (its default 1e-10 zeroes the image features), hence the initializer ranges.
    """
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,  # the plain class needs torchvision
        BlipProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    (out / "vocab.txt").write_text("\n".join(specials + CAPTION_WORDS) + "\n")
    tokenizer = BertTokenizer(vocab=str(out / "vocab.txt"), bos_token="[DEC]", model_max_length=64)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    shape = {"hidden_size": 32, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4}
    text = {**shape, "vocab_size": len(tokenizer), "max_position_embeddings": 64, "initializer_range": 0.1,
            "bos_token_id": tokenizer.convert_tokens_to_ids("[DEC]"), "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {**shape, "image_size": 32, "patch_size": 8, "initializer_range": 0.02}
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32,
                                                    image_text_hidden_size=32, initializer_range=0.1))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
