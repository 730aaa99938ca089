"""The prompt-embedding cache shared by the FLUX and SD3 adapters."""

import pytest
import torch

from vgrpo.models.hf_components import PromptCache


def test_prompt_cache_encodes_each_prompt_alone():
    # An encoder whose output depends on its batch (as batched matmuls do in their last bits).
    cache = PromptCache(lambda ps: {"e": torch.tensor([[len(p) + 0.1 * len(ps)] for p in ps])})
    a = cache.get(["ab", "abc", "ab"], torch.device("cpu"), torch.float32)["e"]
    cache.clear()
    b = cache.get(["abc"], torch.device("cpu"), torch.float32)["e"]
    assert a[:, 0].tolist() == pytest.approx([2.1, 3.1, 2.1]) and b[0, 0] == a[1, 0]
    assert cache.encoder_calls == 2
