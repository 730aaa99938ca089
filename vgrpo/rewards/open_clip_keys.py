"""OpenCLIP ViT state dict (HPSv2.1's `HPS_v2.1_compressed.pt`) -> transformers `CLIPModel` weights.

The key mapping, O = OpenCLIP name (open_clip `src/open_clip/model.py` CLIP and
`src/open_clip/transformer.py` VisionTransformer / ResidualAttentionBlock, as vendored in
HPSv2 `hpsv2/src/open_clip/`), T = transformers name (`models/clip/modeling_clip.py`):

| O | T |
|---|---|
| token_embedding.weight | text_model.embeddings.token_embedding.weight |
| positional_embedding [77, D] | text_model.embeddings.position_embedding.weight |
| ln_final.* | text_model.final_layer_norm.* |
| text_projection [D, E] (x @ P) | text_projection.weight = P.T [E, D] (Linear, no bias) |
| visual.conv1.weight (no bias) | vision_model.embeddings.patch_embedding.weight |
| visual.class_embedding [W] | vision_model.embeddings.class_embedding |
| visual.positional_embedding [1 + g*g, W] | vision_model.embeddings.position_embedding.weight |
| visual.ln_pre.* / visual.ln_post.* | vision_model.pre_layrnorm.* / vision_model.post_layernorm.* |
| visual.proj [W, E] | visual_projection.weight = proj.T [E, W] |
| logit_scale (0-dim) | logit_scale |
| {P}transformer.resblocks.i.ln_1 / ln_2 | {Q}encoder.layers.i.layer_norm1 / layer_norm2 |
| {P}...attn.in_proj_weight [3D, D], in_proj_bias [3D] | {Q}...self_attn.{q,k,v}_proj.{weight,bias} (rows split in q, k, v order, as nn.MultiheadAttention does) |
| {P}...attn.out_proj.* | {Q}...self_attn.out_proj.* |
| {P}...mlp.c_fc.* / mlp.c_proj.* | {Q}...mlp.fc1.* / mlp.fc2.* |

with {P} = "" -> {Q} = "text_model.", {P} = "visual." -> {Q} = "vision_model.". Both towers use exact
GELU (ViT-H-14 has no quick_gelu) and LayerNorm eps 1e-5. Text pooling: OpenCLIP takes the token at
`text.argmax(-1)` (the end-of-text id is the largest); transformers takes the first end-of-text
token, the same position. Head counts are not stored in the state dict: text heads = width / 64
(true of every OpenCLIP text config), vision heads = width / head_width with head_width 80 for
width 1280 (ViT-H), 88 for 1408 (ViT-g), 104 for 1664 (ViT-bigG), 64 otherwise; pass them
explicitly for other models.
"""

from __future__ import annotations

import re
from typing import Any

import torch

VISION_HEAD_WIDTH = {1280: 80, 1408: 88, 1664: 104}
TOWERS = {"": "text_model.", "visual.": "vision_model."}
BLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
SINGLE_RENAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "logit_scale": "logit_scale",
}
TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}
IGNORED = {"attn_mask"}  # OpenCLIP's causal mask buffer, rebuilt by transformers
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def open_clip_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The OpenCLIP weights of a loaded checkpoint: its "state_dict" entry (HPS) or the dict itself,
    with DistributedDataParallel's "module." prefix removed."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or "visual.conv1.weight" not in {k.removeprefix("module.") for k in state}:
        raise ValueError("not an OpenCLIP ViT checkpoint: no 'visual.conv1.weight' in its state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP ViT state dict -> transformers CLIPModel state dict (table in the module docstring).

    Unknown keys raise ValueError (an attention pooler, patch norm or custom text tower would be
    silently dropped otherwise).
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in IGNORED:
            continue
        if key in SINGLE_RENAMES:
            out[SINGLE_RENAMES[key]] = value
        elif key in TRANSPOSED:
            out[TRANSPOSED[key]] = value.t().contiguous()
        elif match := _BLOCK.match(key):
            tower = TOWERS[match.group(1) or ""]
            prefix = f"{tower}encoder.layers.{match.group(2)}."
            rest = match.group(3)
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part.contiguous()
            else:
                module, _, param = rest.rpartition(".")
                if module not in BLOCK_RENAMES:
                    unknown.append(key)
                    continue
                out[f"{prefix}{BLOCK_RENAMES[module]}.{param}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"OpenCLIP keys with no transformers CLIP counterpart: {sorted(unknown)[:8]}")
    return out


def open_clip_config(
    state: dict[str, torch.Tensor],
    *,
    bos_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    vision_heads: int | None = None,
    text_heads: int | None = None,
):
    """transformers CLIPConfig for an OpenCLIP ViT state dict (sizes read from the tensor shapes)."""
    from transformers import CLIPConfig

    def layers(prefix: str) -> int:
        ids = {int(m.group(2)) for k in state if (m := _BLOCK.match(k)) and (m.group(1) or "") == prefix}
        return max(ids) + 1

    text_width = state["ln_final.weight"].shape[0]
    vision_width = state["visual.ln_pre.weight"].shape[0]
    patch = state["visual.conv1.weight"].shape[-1]
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    vision_heads = vision_heads or vision_width // VISION_HEAD_WIDTH.get(vision_width, 64)
    text_heads = text_heads or max(text_width // 64, 1)
    projection = state["text_projection"].shape[1]
    return CLIPConfig(
        text_config=dict(
            vocab_size=state["token_embedding.weight"].shape[0],
            hidden_size=text_width,
            intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=layers(""),
            num_attention_heads=text_heads,
            max_position_embeddings=state["positional_embedding"].shape[0],
            projection_dim=projection,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        ),
        vision_config=dict(
            hidden_size=vision_width,
            intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=layers("visual."),
            num_attention_heads=vision_heads,
            image_size=grid * patch,
            patch_size=patch,
            projection_dim=projection,
            hidden_act="gelu",
            layer_norm_eps=1e-5,
        ),
        projection_dim=projection,
        logit_scale_init_value=float(state["logit_scale"]),
    )
