"""Images/s of the CLIP-family rewards with PIL preprocessing (before) and device preprocessing (after).

Small random models in the real layouts (nothing downloaded): every reward's vision tower sees
224 x 224 inputs in 32 x 32 patches (49 tokens), width 32-128, 2 layers, so the numbers measure the
preprocessing and scoring overhead around the model, not a real ViT-H / ViT-L forward. Input: a
batch of 16 RGB images of 512 x 512 (SD 3.5 / FLUX training resolution), float in [0, 1].

- pil (before): each image rounded to uint8 and converted to a PIL image, then the original's
  per-image preprocessing (transformers' CLIPImageProcessor for PickScore / CLIPScore / aesthetic,
  HPSv2's ToTensor + float resize, ImageReward's PIL resize; ImageReward also one image per call,
  as the package's score()), then the same model;
- device (after): `vgrpo.rewards.image_transform` on the batch, batched model calls.

    pytest bench/bench_rewards.py --benchmark-only -s --benchmark-json=bench/results/cpu_2core_rewards.json

Each test alternates before / after calls and keeps the best of 7 each (`extra_info`:
pil_images_per_s, device_images_per_s, speedup).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

from bench.memory import device_name

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

BATCH, RESOLUTION, MODEL_IMAGE, PATCH, ROUNDS = 16, 512, 224, 32, 7
NAMES = ["pickscore", "clipscore", "aesthetic", "hpsv2", "imagereward"]
PROMPTS = ["a photo of a red cube left of a blue sphere"] * BATCH


@pytest.fixture(scope="module")
def model_dirs():
    from tests.tiny_clip import make_tiny_clip_dir
    from tests.tiny_reward_models import make_tiny_hpsv2_dir, make_tiny_image_reward_dir
    from vgrpo.rewards.aesthetic import CLIP_SUBDIR, MLP_FILE
    from vgrpo.rewards.mlp_head import ScoreMLP

    root = Path(tempfile.mkdtemp(prefix="vgrpo-bench-rewards-"))
    clip = make_tiny_clip_dir(root / "clip", image_size=MODEL_IMAGE, patch_size=PATCH)
    shutil.copytree(clip, root / "aesthetic" / CLIP_SUBDIR)
    torch.save(ScoreMLP(embed_dim=16).state_dict(), root / "aesthetic" / MLP_FILE)
    dirs = {
        "pickscore": clip,
        "clipscore": clip,
        "aesthetic": root / "aesthetic",
        "hpsv2": make_tiny_hpsv2_dir(root / "hpsv2", image_size=MODEL_IMAGE, patch_size=PATCH),
        "imagereward": make_tiny_image_reward_dir(root / "imagereward", image_size=MODEL_IMAGE, patch_size=PATCH),
    }
    yield dirs
    shutil.rmtree(root, ignore_errors=True)


def _pil_transform(name: str, model_dir: Path):
    """The original's per-image PIL preprocessing as a drop-in for reward.transform(images, dtype)."""
    from tests import original_hpsv2, original_image_reward
    from vgrpo.rewards.pil import to_pil_images

    if name in ("hpsv2", "imagereward"):
        one = (original_hpsv2 if name == "hpsv2" else original_image_reward).preprocess

        def per_image(pil_images):
            return torch.stack([one(im, MODEL_IMAGE) for im in pil_images])
    else:
        from transformers import CLIPImageProcessor

        clip_dir = model_dir / "clip-vit-large-patch14" if name == "aesthetic" else model_dir
        processor = CLIPImageProcessor.from_pretrained(clip_dir, local_files_only=True)

        def per_image(pil_images):
            return processor(images=pil_images, return_tensors="pt")["pixel_values"]

    def transform(images, dtype=torch.float32):
        return per_image(to_pil_images(images)).to(images.device, dtype)

    return transform


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@pytest.mark.parametrize("name", NAMES)
def test_reward_throughput(benchmark, model_dirs, name):
    """Alternates before / after calls (ROUNDS each, best kept: the machine is shared, so the minimum
    is the least disturbed measurement); the benchmark's own rounds time the device path."""
    from vgrpo.rewards.registry import build_reward

    after = build_reward(name, str(model_dirs[name]), device=DEVICE)
    before = build_reward(name, str(model_dirs[name]), device=DEVICE)
    before.transform = _pil_transform(name, Path(model_dirs[name]))
    if name == "imagereward":
        before.batch_size = 1
    images = torch.rand(BATCH, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    best = {"pil": float("inf"), "device": float("inf")}
    for round_index in range(ROUNDS + 1):  # round 0 warms up
        for provider, reward in (("pil", before), ("device", after)):
            seconds = _timed(lambda: reward(images, PROMPTS))
            if round_index:
                best[provider] = min(best[provider], seconds)
    benchmark.pedantic(lambda: after(images, PROMPTS), rounds=3, warmup_rounds=0, iterations=1)
    for provider, seconds in best.items():
        benchmark.extra_info[f"{provider}_images_per_s"] = BATCH / seconds
    benchmark.extra_info["speedup"] = best["pil"] / best["device"]
    benchmark.extra_info["device"] = device_name(DEVICE)
    benchmark.extra_info["batch"] = BATCH
    benchmark.extra_info["resolution"] = RESOLUTION
    print(f"{name}: pil {BATCH / best['pil']:.1f} img/s, device {BATCH / best['device']:.1f} img/s, "
          f"x{best['pil'] / best['device']:.2f}")
