"""Tiny random HPSv2.1 and ImageReward directories in the ORIGINAL release layouts (nothing downloaded).

- HPSv2.1: HPS_v2.1_compressed.pt ({"state_dict": OpenCLIP keys}) + CLIP tokenizer files
  (byte-level vocabulary without merges, tests/tiny_clip.py); ViT width 128 / 2 heads / patch 8 /
  image 32, text width 128 / 2 heads, 2 layers each, embed 32.
- ImageReward: ImageReward.pt (blip.* and mlp.* keys) + med_config.json + a WordPiece vocab.txt;
  BLIP ViT width 128 / 2 heads / patch 8 / image 32, BERT width 64 / 2 heads / 2 layers.
Both checkpoints are written with torch.save of plain tensors, as the releases are.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from tests.fixtures_tiny_models import _cached, clip_tokenizer
from tests.tiny_clip import write_clip_vocab
from tests.original_hpsv2 import random_original_clip
from tests.original_image_reward import random_original_image_reward, tiny_med_config

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_WORDS = "a an the red green blue small large circle square triangle two of left right photo cat dog".split()


def make_tiny_hpsv2_dir(path: Path, seed: int = 0, image_size: int = 32, patch_size: int = 8) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer()
    write_clip_vocab(path)
    model = random_original_clip(seed, vocab_size=len(tokenizer.get_vocab()), image_size=image_size, patch_size=patch_size)
    torch.save({"state_dict": model.state_dict()}, path / "HPS_v2.1_compressed.pt")
    return path


def write_bert_vocab(path: Path) -> int:
    """WordPiece vocab.txt: specials, words, single characters and their ## forms; returns its size."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = list(dict.fromkeys(BERT_SPECIALS + BERT_WORDS + chars + ["##" + c for c in chars]))
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return len(tokens)


def make_tiny_image_reward_dir(path: Path, seed: int = 0, image_size: int = 32, patch_size: int = 8) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = write_bert_vocab(path) + 2  # + [DEC], [ENC] as BLIP's init_tokenizer adds
    med_config = tiny_med_config(vocab_size)
    (path / "med_config.json").write_text(json.dumps(med_config, indent=2))
    model = random_original_image_reward(med_config, seed, image_size=image_size, patch=patch_size)
    torch.save(model.state_dict(), path / "ImageReward.pt")
    return path


def tiny_hpsv2_dir() -> Path:
    """Shared by every test of the process (read-only by convention)."""
    return _cached("hpsv2", make_tiny_hpsv2_dir)


def tiny_image_reward_dir() -> Path:
    """Shared by every test of the process (read-only by convention)."""
    return _cached("imagereward", make_tiny_image_reward_dir)
