"""HPSv2.1: OpenCLIP ViT-H-14 fine-tuned on human preferences, run as a transformers `CLIPModel`.

The score is cos(image, prompt) of the tuned model (HPSv2 `hpsv2/img_score.py` score: normalised
features, diagonal of image @ text.T), about 0.25-0.40 for real images. Two directory layouts:

- original: `HPS_v2.1_compressed.pt` (from the xswu/HPSv2 release; its "state_dict" holds the
  OpenCLIP weights) + the CLIP tokenizer files `vocab.json` and `merges.txt` (the OpenAI BPE that
  open_clip ships; take them, with tokenizer_config.json if you like, from
  laion/CLIP-ViT-H-14-laion2B-s32B-b79K or openai/clip-vit-large-patch14: same vocabulary). The
  checkpoint is read with `weights_only=True` and its keys mapped at every load
  (vgrpo.rewards.open_clip_keys; the model is built without random init, which alone took 28 s for
  ViT-H on a 2-core CPU); for loads without the pickle reader and the mapping:
- converted (once: `python -m vgrpo.rewards.convert hpsv2 SRC DST`): config.json +
  model.safetensors + the tokenizer files, a plain transformers CLIP directory.

Preprocessing is the original's `image_transform(224, is_train=False)` (HPSv2
`hpsv2/src/open_clip/transform.py`): ToTensor, Resize(224, bicubic) of the float tensor (antialiased,
not clipped), CenterCrop (torchvision's rounding), OpenAI mean/std, done on the device.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vgrpo.rewards.clip_similarity import TOKENIZER_FILES, ClipSimilarityReward, load_clip, load_clip_tokenizer
from vgrpo.rewards.empty_init import skip_weight_init
from vgrpo.rewards.image_transform import ImageTransform
from vgrpo.rewards.open_clip_keys import convert_open_clip, open_clip_config, open_clip_state_dict
from vgrpo.utils.local_files import require_files

CHECKPOINT = "HPS_v2.1_compressed.pt"
CONVERTED_FILES = ("config.json", "model.safetensors")


def hpsv2_transform(image_size: int) -> ImageTransform:
    """HPSv2's eval transform: float-tensor bicubic resize (no clipping), torchvision centre crop."""
    return ImageTransform(size=image_size, crop=(image_size, image_size), crop_offset="round", clamp=False)


def load_hpsv2_clip(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    vision_heads: int | None = None,
    text_heads: int | None = None,
):
    """(CLIPModel, tokenizer) from a converted directory or from `HPS_v2.1_compressed.pt` + tokenizer files."""
    root = require_files(path, (f"{CONVERTED_FILES[1]}|{CHECKPOINT}", *TOKENIZER_FILES), "HPSv2.1")
    tokenizer = load_clip_tokenizer(root)
    if all((root / name).is_file() for name in CONVERTED_FILES):
        return load_clip(root, dtype, torch.device(device)), tokenizer
    from transformers import CLIPModel

    state = open_clip_state_dict(torch.load(root / CHECKPOINT, map_location="cpu", weights_only=True))
    config = open_clip_config(
        state,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        vision_heads=vision_heads,
        text_heads=text_heads,
    )
    with skip_weight_init():
        model = CLIPModel(config)
    model.load_state_dict(convert_open_clip(state), strict=True)
    return model.to(dtype=dtype).eval().requires_grad_(False).to(device), tokenizer


class HPSv2Reward(ClipSimilarityReward):
    """HPSv2.1 score per image ([B] float32): cos(image, prompt) of the tuned CLIP-H.

    Extra args: vision_heads / text_heads for OpenCLIP checkpoints other than ViT-H-14 (see
    vgrpo.rewards.open_clip_keys); the default batch size is 16.
    """

    name = "hpsv2"

    def __init__(self, path, *, batch_size: int = 16, vision_heads: int | None = None, text_heads: int | None = None, **kwargs):
        self._heads = dict(vision_heads=vision_heads, text_heads=text_heads)
        super().__init__(path, batch_size=batch_size, **kwargs)

    def load(self, path: Path, processor_path):
        """The tokenizer files live in the model directory (processor_path is not used)."""
        model, tokenizer = load_hpsv2_clip(path, dtype=self.dtype, device=self.device, **self._heads)
        return model, tokenizer, hpsv2_transform(model.config.vision_config.image_size)

    def scale(self, cos, logit_scale):
        return cos
