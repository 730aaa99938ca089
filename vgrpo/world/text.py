"""Offline text side of the shapes world: a word-level tokenizer over the grammar's vocabulary and a
small CLIP text encoder (the family SD 3.5 uses), built without any download.

Token ids: 0 [PAD], 1 [BOS], 2 [EOS], 3 [UNK], then `vocabulary()` in order. Every prompt is
tokenized as [BOS] words... [EOS] padded to MAX_LENGTH; the empty prompt "" (the unconditional
input for classifier-free guidance) is [BOS] [EOS] [PAD]... .
"""

from __future__ import annotations

from typing import Sequence

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast

from vgrpo.world.prompts import vocabulary

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
MAX_LENGTH = 12


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the grammar's vocabulary (deterministic ids, no files)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(vocabulary()))}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=MAX_LENGTH,
    )


def tokenize(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> torch.Tensor:
    """[P] prompts -> [P, MAX_LENGTH] long ids; raises ValueError naming a word outside the vocabulary."""
    known = set(tokenizer.get_vocab())
    for p in prompts:
        for w in p.split():
            if w not in known or w in SPECIAL_TOKENS:
                raise ValueError(f"prompt {p!r}: word {w!r} is not in the shapes vocabulary")
        if len(p.split()) + 2 > MAX_LENGTH:
            raise ValueError(f"prompt {p!r} is longer than {MAX_LENGTH - 2} words")
    enc = tokenizer(list(prompts), padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
    return enc["input_ids"]


def text_encoder_config(hidden_size: int = 64, layers: int = 2, heads: int = 2, projection_dim: int = 64) -> CLIPTextConfig:
    """Config of the small CLIP text encoder (causal, pooled at [EOS], projected to projection_dim)."""
    return CLIPTextConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(vocabulary()),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=projection_dim,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def build_text_encoder(config: CLIPTextConfig, seed: int = 0) -> CLIPTextModelWithProjection:
    """A freshly initialised text encoder (reproducible from `seed`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModelWithProjection(config)


def encode(encoder: CLIPTextModelWithProjection, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [P, L] -> (hidden states [P, L, hidden_size], pooled projection [P, projection_dim])."""
    out = encoder(input_ids=ids.to(encoder.device))
    return out.last_hidden_state, out.text_embeds
