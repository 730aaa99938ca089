"""Reference of the original ImageReward scoring, written from its source, in its key format.

Used to build tiny random `ImageReward.pt` checkpoints and to check that the transformers port
(vgrpo.rewards.image_reward) scores exactly as the original would, without the image-reward package.

- vision: ImageReward `ImageReward/models/BLIP/vit.py` VisionTransformer.forward (patch_embed.proj
  conv with bias, cls_token, pos_embed, blocks of x + attn(norm1(x)) with a fused qkv Linear
  reshaped (B, N, 3, heads, hd), x + mlp(norm2(x)) with GELU, final norm; LayerNorm eps 1e-6);
- text: `ImageReward/models/BLIP/med.py` BertModel(add_pooling_layer=False).forward in mode
  "multimodal": BertEmbeddings (word + absolute position embeddings, LayerNorm, no token types),
  BertLayer = self-attention -> cross-attention over the image tokens -> intermediate -> output,
  masks extended as (1 - mask) * -10000;
- head: `ImageReward/ImageReward.py` MLP and ImageReward.score: text_output.last_hidden_state[:, 0]
  -> MLP -> (r - mean) / std; prompts tokenised with padding="max_length", max_length=35;
  BLIP_Pretrain's unused vision_proj / text_proj are kept in the checkpoint as the release has them;
- preprocessing: ImageReward.py `_transform`: Resize(n_px, BICUBIC) of the PIL image, CenterCrop
  (torchvision: int(round((h - c) / 2))), ToTensor, Normalize(OpenAI mean / std).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import nn

from tests.original_hpsv2 import OPENAI_MEAN, OPENAI_STD

SCORE_MEAN = 0.16717362830052426
SCORE_STD = 1.0333394966054072


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch, dim, depth, heads):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.pos_embed[:, : x.size(1), :]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg, kv_width):
        super().__init__()
        self.heads, self.head = cfg["num_attention_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
        self.query = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])
        self.key = nn.Linear(kv_width, cfg["hidden_size"])
        self.value = nn.Linear(kv_width, cfg["hidden_size"])

    def split(self, x):
        return x.view(*x.shape[:-1], self.heads, self.head).permute(0, 2, 1, 3)

    def forward(self, hidden, mask, kv=None):
        kv = hidden if kv is None else kv
        q, k, v = self.split(self.query(hidden)), self.split(self.key(kv)), self.split(self.value(kv))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head) + mask
        ctx = (scores.softmax(dim=-1) @ v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(*ctx.shape[:-2], self.heads * self.head)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg, inner):
        super().__init__()
        self.dense = nn.Linear(inner, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg, kv_width):
        super().__init__()
        self.self = BertSelfAttention(cfg, kv_width)
        self.output = BertSelfOutput(cfg, cfg["hidden_size"])

    def forward(self, hidden, mask, kv=None):
        return self.output(self.self(hidden, mask, kv), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg, cfg["hidden_size"])
        self.crossattention = BertAttention(cfg, cfg["encoder_width"])
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg["intermediate_size"])

    def forward(self, hidden, mask, image_embeds, image_mask):
        x = self.attention(hidden, mask)
        x = self.crossattention(x, image_mask, image_embeds)
        return self.output(self.intermediate(x), x)


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"], padding_idx=cfg["pad_token_id"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.register_buffer("position_ids", torch.arange(cfg["max_position_embeddings"]).expand((1, -1)))

    def forward(self, ids):
        pos = self.position_ids[:, : ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos))


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg["num_hidden_layers"])])


class BertModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    def forward(self, ids, attention_mask, image_embeds, image_atts):
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        image_mask = (1.0 - image_atts[:, None, None, :].float()) * -10000.0
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, mask, image_embeds, image_mask)
        return x


class BLIP(nn.Module):
    def __init__(self, cfg, image_size, patch, vision_width, depth, heads, embed_dim=16):
        super().__init__()
        self.visual_encoder = VisionTransformer(image_size, patch, vision_width, depth, heads)
        self.text_encoder = BertModel(dict(cfg, encoder_width=vision_width))
        self.vision_proj = nn.Linear(vision_width, embed_dim)
        self.text_proj = nn.Linear(cfg["hidden_size"], embed_dim)


class MLP(nn.Module):
    def __init__(self, input_size):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.layers(x)


class OriginalImageReward(nn.Module):
    """ImageReward with BLIP; state_dict() keys are ImageReward.pt's (blip.*, mlp.layers.*)."""

    def __init__(self, med_config: dict, image_size=32, patch=8, vision_width=128, depth=2, heads=2):
        super().__init__()
        self.blip = BLIP(med_config, image_size, patch, vision_width, depth, heads)
        self.mlp = MLP(med_config["hidden_size"])

    def score(self, pixels, input_ids, attention_mask):
        """ImageReward.score for a batch (the original runs one image at a time): -> [B]."""
        image_embeds = self.blip.visual_encoder(pixels)
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
        text = self.blip.text_encoder(input_ids, attention_mask, image_embeds, image_atts)
        rewards = self.mlp(text[:, 0, :].float())
        return ((rewards - SCORE_MEAN) / SCORE_STD).squeeze(1)


def tiny_med_config(vocab_size: int) -> dict:
    """A med_config.json of the release's form, tiny: 2 layers, width 64, 2 heads."""
    return {
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 2,
        "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": vocab_size,
        "encoder_width": 64, "add_cross_attention": True,
    }


def random_original_image_reward(med_config: dict, seed: int = 0, **sizes) -> OriginalImageReward:
    """Every parameter random (LayerNorms and biases included); sizes: OriginalImageReward's."""
    torch.manual_seed(seed)
    model = OriginalImageReward(med_config, **sizes)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def preprocess(pil_image: Image.Image, n_px: int) -> torch.Tensor:
    """ImageReward _transform(n_px) on one PIL image -> [3, n_px, n_px]."""
    w, h = pil_image.size
    short, long = min(h, w), max(h, w)
    size = (n_px, int(n_px * long / short)) if h <= w else (int(n_px * long / short), n_px)
    if (h, w) != size:
        pil_image = pil_image.resize((size[1], size[0]), Image.BICUBIC)
    top, left = int(round((size[0] - n_px) / 2.0)), int(round((size[1] - n_px) / 2.0))
    pil_image = pil_image.crop((left, top, left + n_px, top + n_px)).convert("RGB")
    x = torch.from_numpy(np.asarray(pil_image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(OPENAI_MEAN).view(3, 1, 1)) / torch.tensor(OPENAI_STD).view(3, 1, 1)
