"""PickScore and CLIPScore: scaled cosine similarity of CLIP image and prompt embeddings.

Both load a transformers `CLIPModel` and its processor from local directories, preprocess exactly
as the published models do (uint8 RGB images through the CLIP processor, prompts padded and
truncated to 77 tokens), and score each image against its own prompt.
- PickScore (yuvalkirstain/PickScore_v1; processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K):
  logit_scale.exp() * cos(image, text), about 18-24 for real images.
- CLIPScore (openai/clip-vit-large-patch14): 100 * max(cos(image, text), 0), torchmetrics' form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.pil import to_pil_images
from vgrpo.utils.local_files import require_files

MODEL_FILES = ("config.json", "model.safetensors|pytorch_model.bin")
PROCESSOR_FILES = ("preprocessor_config.json|processor_config.json", "tokenizer.json|vocab.json")


class ClipSimilarityReward:
    """Base class: `scale(cos, logit_scale) -> score` is what PickScore and CLIPScore differ in.

    Args:
        path: local directory of the CLIP model (config.json + weights).
        processor_path: directory of the processor/tokenizer files (default: `path`).
        device, dtype: where and in which precision the model runs.
        batch_size: images per forward pass.
    """

    name = "clip_similarity"

    def __init__(
        self,
        path: str | Path,
        *,
        processor_path: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ):
        from transformers import AutoProcessor, CLIPModel

        model_dir = require_files(path, MODEL_FILES, f"{self.name} model")
        proc_dir = require_files(processor_path or path, PROCESSOR_FILES, f"{self.name} processor")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.processor = AutoProcessor.from_pretrained(proc_dir, local_files_only=True)
        self.model = CLIPModel.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
        self.model.eval().requires_grad_(False).to(self.device)
        self.dtype = dtype

    def scale(self, cos: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1], B prompts -> [B] float32 scores."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {len(prompts)} prompts")
        out = []
        for start in range(0, len(prompts), self.batch_size):
            stop = start + self.batch_size
            inputs = self.processor(
                images=to_pil_images(images[start:stop]),
                text=list(prompts[start:stop]),
                padding=True,
                truncation=True,
                max_length=77,
                return_tensors="pt",
            ).to(self.device)
            image = _features(self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.dtype)))
            text = _features(
                self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            )
            cos = torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)
            out.append(self.scale(cos, self.model.logit_scale.float()).cpu())
        return torch.cat(out)


def _features(output) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class PickScoreReward(ClipSimilarityReward):
    """PickScore: logit_scale.exp() * cos(image, prompt)."""

    name = "pickscore"

    def scale(self, cos, logit_scale):
        return logit_scale.exp() * cos


class ClipScoreReward(ClipSimilarityReward):
    """CLIPScore: 100 * max(cos(image, prompt), 0)."""

    name = "clipscore"

    def scale(self, cos, logit_scale):
        return 100.0 * cos.clamp(min=0)
