"""ImageReward checkpoint (`ImageReward.pt`, BLIP key format) -> `ImageRewardModel` weights.

Key mapping, O = ImageReward name (ImageReward `ImageReward/ImageReward.py` ImageReward / MLP,
`ImageReward/models/BLIP/vit.py` VisionTransformer, `ImageReward/models/BLIP/med.py` BertModel),
T = `vgrpo.rewards.image_reward.ImageRewardModel` name (transformers `BlipVisionModel`,
`BlipTextModel` from `models/blip/modeling_blip{,_text}.py`, and the MLP):

| O | T |
|---|---|
| blip.visual_encoder.patch_embed.proj.* | vision_model.embeddings.patch_embedding.* |
| blip.visual_encoder.cls_token [1, 1, W] | vision_model.embeddings.class_embedding |
| blip.visual_encoder.pos_embed [1, 1 + g*g, W] | vision_model.embeddings.position_embedding |
| blip.visual_encoder.blocks.i.norm1 / norm2 | vision_model.encoder.layers.i.layer_norm1 / layer_norm2 |
| blip.visual_encoder.blocks.i.attn.qkv.* (fused, q-k-v rows) | vision_model.encoder.layers.i.self_attn.qkv.* (same layout) |
| blip.visual_encoder.blocks.i.attn.proj.* | vision_model.encoder.layers.i.self_attn.projection.* |
| blip.visual_encoder.blocks.i.mlp.fc1 / fc2 | vision_model.encoder.layers.i.mlp.fc1 / fc2 |
| blip.visual_encoder.norm.* | vision_model.post_layernorm.* |
| blip.text_encoder.<rest> | text_encoder.<rest> (transformers' BLIP text model is med.py's BertModel, same names) |
| mlp.layers.{0,2,4,6,7}.* | mlp.layers.{0,2,4,6,7}.* |

Dropped: blip.vision_proj / blip.text_proj (contrastive heads the score does not use), med.py's
`embeddings.position_ids` buffer, and with a warning any other blip.* module the score does not
use (ImageReward's `load` reads the checkpoint with strict=False, so such keys never mattered).
Unknown keys inside the two towers or outside blip.* / mlp.* raise. ViT LayerNorm eps is 1e-6 (vit.py's norm_layer), exact
GELU in both towers; vision heads = width / 64 (ViT-B 12, ViT-L 16); text sizes from med_config.json.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

log = logging.getLogger(__name__)

VIT_RENAMES = {
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
BLOCK_RENAMES = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
DROPPED_PREFIXES = ("blip.vision_proj.", "blip.text_proj.")
DROPPED_SUFFIXES = ("embeddings.position_ids",)
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$")


def image_reward_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of a loaded ImageReward.pt (a plain state dict, or one under "state_dict")."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or "blip.visual_encoder.cls_token" not in state or "mlp.layers.0.weight" not in state:
        raise ValueError("not an ImageReward checkpoint: expected keys blip.visual_encoder.* and mlp.layers.*")
    return state


def convert_image_reward(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageReward state dict -> ImageRewardModel state dict (table in the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    unknown, unused = [], []
    for key, value in state.items():
        if key.startswith(DROPPED_PREFIXES) or key.endswith(DROPPED_SUFFIXES):
            continue
        if key.startswith("blip.") and not key.startswith(("blip.text_encoder.", "blip.visual_encoder.")):
            unused.append(key)
            continue
        if key.startswith("blip.text_encoder."):
            out["text_encoder." + key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp.layers."):
            out[key] = value
        elif key.startswith("blip.visual_encoder."):
            rest = key.removeprefix("blip.visual_encoder.")
            if rest in VIT_RENAMES:
                out["vision_model." + VIT_RENAMES[rest]] = value
            elif (m := _BLOCK.match(rest)) and m.group(2) in BLOCK_RENAMES:
                out[f"vision_model.encoder.layers.{m.group(1)}.{BLOCK_RENAMES[m.group(2)]}.{m.group(3)}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"ImageReward keys with no counterpart: {sorted(unknown)[:8]}")
    if unused:
        log.warning("ImageReward: ignoring %d checkpoint keys the score does not use, e.g. %s", len(unused), unused[:3])
    return out


def image_reward_config(state: dict[str, torch.Tensor], med_config: dict[str, Any]):
    """transformers BlipConfig: vision sizes from the ViT tensors, text sizes from med_config.json."""
    from transformers import BlipConfig

    width = state["blip.visual_encoder.cls_token"].shape[-1]
    patch = state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1]
    grid = round((state["blip.visual_encoder.pos_embed"].shape[1] - 1) ** 0.5)
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blip\.visual_encoder\.blocks\.(\d+)\.", k)))
    vision = dict(
        hidden_size=width,
        intermediate_size=state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=depth,
        num_attention_heads=max(width // 64, 1),
        image_size=grid * patch,
        patch_size=patch,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
    )
    text = dict(
        vocab_size=med_config["vocab_size"],
        hidden_size=med_config["hidden_size"],
        encoder_hidden_size=width,
        intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"],
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config["max_position_embeddings"],
        hidden_act=med_config.get("hidden_act", "gelu"),
        layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        pad_token_id=med_config.get("pad_token_id", 0),
        bos_token_id=med_config["vocab_size"] - 2,  # [DEC], added to bert-base-uncased by BLIP's init_tokenizer
    )
    return BlipConfig(vision_config=vision, text_config=text)
