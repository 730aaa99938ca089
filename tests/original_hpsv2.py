"""Reference of the original HPSv2.1 scoring, written from its source, in OpenCLIP's key format.

Used to build tiny random checkpoints in the original format and to check that the transformers
port (vgrpo.rewards.hpsv2) scores exactly as the original would, without open_clip installed.

- model: open_clip `src/open_clip/transformer.py` (as vendored in HPSv2 `hpsv2/src/open_clip/`):
  ResidualAttentionBlock.forward (x + attn(ln_1(x)) with nn.MultiheadAttention on [L, N, D], then
  x + mlp(ln_2(x)) with c_fc / GELU / c_proj), VisionTransformer.forward (conv1 without bias, class
  token, positional embedding, ln_pre, transformer, token 0, ln_post, @ proj);
  `src/open_clip/model.py` CLIP.encode_text (token + positional embedding, causal attn_mask,
  ln_final, the token at text.argmax(-1), @ text_projection) and CLIP.forward (normalised features).
- tokenisation: open_clip `src/open_clip/tokenizer.py` tokenize: [sot] + BPE + [eot], cut to 77
  with [eot] last, zero-padded to 77 (the BPE itself comes from the same vocab.json / merges.txt).
- preprocessing: HPSv2 `hpsv2/src/open_clip/transform.py` image_transform(is_train=False): PIL
  image -> ToTensor -> Resize(size, BICUBIC) of the float tensor (torchvision >= 0.17: antialias,
  no clipping) -> CenterCrop (int(round((h - c) / 2))) -> Normalize(OpenAI mean / std).
- score: HPSv2 `hpsv2/img_score.py` score: diagonal of image_features @ text_features.T.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(4 * width, width)),
        ]))

    def forward(self, x, attn_mask=None):  # x: [L, N, D]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int):
        super().__init__()
        grid = image_size // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, output_dim) * width**-0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)  # [N, g*g, W]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0]) @ self.proj


class OriginalCLIP(nn.Module):
    """OpenCLIP CLIP with a ViT image tower; state_dict() keys are the HPSv2 checkpoint's."""

    def __init__(self, *, embed_dim=32, image_size=32, patch_size=8, vision_width=128, vision_layers=2,
                 vision_heads=2, vocab_size=514, context_length=77, text_width=128, text_layers=2, text_heads=2):
        super().__init__()
        self.visual = VisionTransformer(image_size, patch_size, vision_width, vision_layers, vision_heads, embed_dim)
        self.transformer = Transformer(text_width, text_layers, text_heads)
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, text_width) * 0.01)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim) * text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def encode_image(self, image):
        return F.normalize(self.visual(image), dim=-1)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2), attn_mask=self.attn_mask).permute(1, 0, 2)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection
        return F.normalize(x, dim=-1)

    def score(self, pixels, text):
        """HPSv2 img_score.score: diagonal of normalised image @ text features -> [N]."""
        return torch.diagonal(self.encode_image(pixels) @ self.encode_text(text).T)


def random_original_clip(seed: int = 0, **sizes) -> OriginalCLIP:
    """An OriginalCLIP whose every parameter (LayerNorms and biases included) is random."""
    torch.manual_seed(seed)
    model = OriginalCLIP(**sizes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "logit_scale":
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def tokenize(tokenizer, prompts, context_length: int = 77) -> torch.Tensor:
    """open_clip tokenize: ids of [sot] + BPE + [eot], cut to context_length with [eot] last, 0-padded."""
    out = torch.zeros(len(prompts), context_length, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = [tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = tokenizer.eos_token_id
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def preprocess(pil_image, image_size: int) -> torch.Tensor:
    """HPSv2 image_transform(is_train=False) on one PIL image -> [3, S, S]."""
    x = torch.from_numpy(np.asarray(pil_image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    h, w = x.shape[1:]
    short, long = min(h, w), max(h, w)
    size = (image_size, int(image_size * long / short)) if h <= w else (int(image_size * long / short), image_size)
    if (h, w) != size:
        x = F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]
    top = int(round((size[0] - image_size) / 2.0))
    left = int(round((size[1] - image_size) / 2.0))
    x = x[:, top : top + image_size, left : left + image_size]
    return (x - torch.tensor(OPENAI_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_STD).view(3, 1, 1)
