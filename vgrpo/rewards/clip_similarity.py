"""PickScore, CLIPScore (and HPSv2.1, vgrpo.rewards.hpsv2): scaled cosine of CLIP image and prompt embeddings.

Each loads a transformers `CLIPModel`, the CLIP tokenizer and the image transform of its processor
config from local directories. Images are preprocessed on their own device by
`vgrpo.rewards.image_transform` (the processor's shorter-edge bicubic resize, centre crop and
normalisation as torch ops, batched); prompts are padded and truncated to 77 tokens; each image is
scored against its own prompt.
- PickScore (yuvalkirstain/PickScore_v1; processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K):
  logit_scale.exp() * cos(image, text), about 18-24 for real images.
- CLIPScore (openai/clip-vit-large-patch14): 100 * max(cos(image, text), 0), torchmetrics' form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.image_transform import clip_processor_transform
from vgrpo.utils.local_files import require_files

MODEL_FILES = ("config.json", "model.safetensors|pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json|vocab.json",)
PROCESSOR_FILES = ("preprocessor_config.json|processor_config.json", *TOKENIZER_FILES)
MAX_PROMPT_TOKENS = 77


def load_clip(model_dir: Path, dtype: torch.dtype, device: torch.device):
    """transformers CLIPModel from a local directory: eval mode, frozen, on `device` in `dtype`."""
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
    return model.eval().requires_grad_(False).to(device)


def load_clip_tokenizer(directory: Path):
    """The CLIP BPE tokenizer of `directory`: tokenizer.json, or vocab.json + merges.txt."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(directory, local_files_only=True)


def image_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] normalised pixels -> [B, E] projected image embeddings (not normalised)."""
    return _features(model.get_image_features(pixel_values=pixels))


def _features(output) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is the projected embedding."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipSimilarityReward:
    """Base class: `scale(cos, logit_scale) -> score` is what the CLIP similarity rewards differ in.

    Args:
        path: local directory of the CLIP model (config.json + weights).
        processor_path: directory of the tokenizer files and preprocessor_config.json (default: `path`).
        device, dtype: where and in which precision the model runs (preprocessing runs there too).
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
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.model, self.tokenizer, self.transform = self.load(Path(path), processor_path)

    def load(self, path: Path, processor_path: str | Path | None):
        """(CLIPModel, tokenizer, ImageTransform) of the directories; checks files before loading."""
        model_dir = require_files(path, MODEL_FILES, f"{self.name} model")
        proc_dir = require_files(processor_path or path, PROCESSOR_FILES, f"{self.name} processor")
        transform = clip_processor_transform(proc_dir)
        return load_clip(model_dir, self.dtype, self.device), load_clip_tokenizer(proc_dir), transform

    def scale(self, cos: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] (any device), B prompts -> [B] float32 scores on the CPU."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} images but {len(prompts)} prompts")
        out = []
        for start in range(0, len(prompts), self.batch_size):
            stop = start + self.batch_size
            pixels = self.transform(images[start:stop].to(self.device), self.dtype)
            tokens = self.tokenizer(
                list(prompts[start:stop]), padding=True, truncation=True, max_length=MAX_PROMPT_TOKENS,
                return_tensors="pt",
            ).to(self.device)
            image = image_features(self.model, pixels)
            text = _features(
                self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            )
            cos = torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)
            out.append(self.scale(cos, self.model.logit_scale.float()).cpu())
        return torch.cat(out)


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

