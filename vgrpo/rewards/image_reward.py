"""ImageReward (BLIP-based human-preference model) on transformers' BLIP classes, batched.

The score (ImageReward `ImageReward/ImageReward.py` ImageReward.score): the BLIP ViT-L image tokens
feed the cross-attention of the BERT text encoder over the prompt (padded to 35 tokens); the [CLS]
state goes through the five-linear MLP and is standardised, (s - 0.16717...) / 1.03334..., about
-2 to 2. Here images and prompts are scored as one batch, preprocessed on the device. Layouts:

- original: `ImageReward.pt` + `med_config.json` (from the THUDM/ImageReward release) + `vocab.txt`
  of bert-base-uncased (the tokenizer BLIP builds; [DEC] and [ENC] are added as BLIP's
  init_tokenizer does). Read with `weights_only=True`, keys mapped at every load
  (vgrpo.rewards.blip_keys);
- converted (once: `python -m vgrpo.rewards.convert imagereward SRC DST`): config.json (BlipConfig)
  + model.safetensors + vocab.txt.

Preprocessing is the original's `_transform(224)`: Resize(224, bicubic) of the PIL image (clipped
to [0, 1]), CenterCrop (torchvision's rounding), OpenAI mean/std.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from vgrpo.rewards.blip_keys import convert_image_reward, image_reward_config, image_reward_state_dict
from vgrpo.rewards.empty_init import skip_weight_init
from vgrpo.rewards.image_transform import ImageTransform
from vgrpo.rewards.mlp_head import ScoreMLP
from vgrpo.utils.local_files import require_files

CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_FILE = "vocab.txt"
CONVERTED_FILES = ("config.json", "model.safetensors")
SCORE_MEAN = 0.16717362830052426
SCORE_STD = 1.0333394966054072
MAX_PROMPT_TOKENS = 35


class ImageRewardModel(nn.Module):
    """BLIP vision tower + BERT text encoder with cross-attention + score MLP.

    forward(pixel_values [B, 3, S, S], input_ids [B, L], attention_mask [B, L]) -> [B] standardised scores.
    """

    def __init__(self, config):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        self.config = config
        self.vision_model = BlipVisionModel(config.vision_config)
        self.text_encoder = BlipTextModel(config.text_config, add_pooling_layer=False)
        self.mlp = ScoreMLP(config.text_config.hidden_size)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision_model(pixel_values=pixel_values).last_hidden_state  # [B, 1 + g*g, W]
        image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)
        text = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
        ).last_hidden_state[:, 0, :].float()  # [B, 768]
        raw = self.mlp(text.to(self.mlp.layers[0].weight.dtype)).float().squeeze(1)
        return (raw - SCORE_MEAN) / SCORE_STD


def load_image_reward_tokenizer(directory: Path):
    """bert-base-uncased WordPiece from vocab.txt, with BLIP's [DEC] / [ENC] special tokens."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(directory, local_files_only=True, do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


def load_image_reward(path: str | Path) -> tuple[ImageRewardModel, object]:
    """(ImageRewardModel in float32 on the CPU, tokenizer) from a converted or an original directory."""
    from safetensors.torch import load_file

    root = require_files(path, (f"{CONVERTED_FILES[1]}|{CHECKPOINT}", TOKENIZER_FILE), "ImageReward")
    tokenizer = load_image_reward_tokenizer(root)
    if all((root / name).is_file() for name in CONVERTED_FILES):
        from transformers import BlipConfig

        config = BlipConfig.from_pretrained(root, local_files_only=True)
        state = load_file(root / CONVERTED_FILES[1])
    else:
        require_files(root, (CHECKPOINT, MED_CONFIG), "ImageReward (original layout)")
        original = image_reward_state_dict(torch.load(root / CHECKPOINT, map_location="cpu", weights_only=True))
        config = image_reward_config(original, json.loads((root / MED_CONFIG).read_text()))
        state = convert_image_reward(original)
    with skip_weight_init():
        model = ImageRewardModel(config)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False), tokenizer


def image_reward_transform(image_size: int) -> ImageTransform:
    """ImageReward's `_transform`: PIL bicubic resize (clipped), torchvision centre crop, OpenAI mean/std."""
    return ImageTransform(size=image_size, crop=(image_size, image_size), crop_offset="round", clamp=True)


class ImageRewardReward:
    """ImageReward score per image ([B] float32), batched over images and prompts."""

    name = "imagereward"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        model, self.tokenizer = load_image_reward(path)
        self.model = model.to(self.device, dtype)
        self.model.mlp.float()  # the original scores the float32 [CLS] state
        self.transform = image_reward_transform(model.config.vision_config.image_size)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {len(prompts)} prompts")
        out = []
        for start in range(0, len(prompts), self.batch_size):
            stop = start + self.batch_size
            pixels = self.transform(images[start:stop].to(self.device), self.dtype)
            tokens = self.tokenizer(
                list(prompts[start:stop]), padding="max_length", truncation=True, max_length=MAX_PROMPT_TOKENS,
                return_tensors="pt",
            ).to(self.device)
            out.append(self.model(pixels, tokens["input_ids"], tokens["attention_mask"]).cpu())
        return torch.cat(out)
