"""Prompt encoding of the FLUX and SD3 adapters: each prompt's embedding is the same bits whatever
other prompts share its encoder call (a resumed run's empty cache meets them in other batches)."""

import torch
from torch import nn

from vgrpo.models.hf_components import PromptCache, clip_embeds, t5_embeds


class EncoderOutput(tuple):
    """(pooled [P, 2], last hidden [P, L, 2]) with `.hidden_states`, as a transformers text-model output."""

    hidden_states: tuple


class BatchDependentEncoder(nn.Module):
    """A text encoder whose outputs shift with its batch size, as batched matmuls do in their last bits."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, ids, output_hidden_states=False):
        h = ids.float()[..., None].expand(*ids.shape, 2) * self.scale + 0.01 * ids.shape[0]
        out = EncoderOutput((h.mean(1), h))
        out.hidden_states = (h, 2 * h, 3 * h)
        return out


def test_clip_and_t5_embeddings_do_not_depend_on_the_batch():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    enc = BatchDependentEncoder()

    def one_by_one(fn):
        return torch.cat([fn(ids[i : i + 1]) for i in range(len(ids))])

    assert torch.equal(t5_embeds(enc, ids), one_by_one(lambda row: t5_embeds(enc, row)))
    hidden, pooled = clip_embeds(enc, ids, penultimate=True)
    assert torch.equal(hidden, one_by_one(lambda row: clip_embeds(enc, row, penultimate=True)[0]))
    assert torch.equal(pooled, one_by_one(lambda row: clip_embeds(enc, row, penultimate=True)[1]))
    assert pooled[0, 0] == 2.0 + 0.01 and hidden[0, 0, 0] == 2 * (1.0 + 0.01)  # batches of one, penultimate layer
    assert clip_embeds(enc, ids, penultimate=False)[0].numel() == 0


def test_prompt_cache_encodes_only_new_prompts_in_one_call():
    calls = []

    def encode(prompts):
        calls.append(list(prompts))
        return {"e": torch.tensor([[float(len(p))] for p in prompts])}

    cache = PromptCache(encode)
    a = cache.get(["ab", "abc", "ab"], torch.device("cpu"), torch.float32)["e"]
    b = cache.get(["abc", "abcd"], torch.device("cpu"), torch.float32)["e"]
    assert a[:, 0].tolist() == [2.0, 3.0, 2.0] and b[:, 0].tolist() == [3.0, 4.0]
    assert calls == [["ab", "abc"], ["abcd"]] and cache.encoder_calls == 2
