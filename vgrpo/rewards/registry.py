"""Build rewards by name from a config: `build_reward_set([RewardSpec("pickscore", path=...), ...])`.

| name                    | what                                      | path                       | extra        |
|-------------------------|-------------------------------------------|----------------------------|--------------|
| shapes                  | exact verifier of the built-in world      | -                          | -            |
| shapes_dense            | the verifier, wider shape ramps (training)| -                          | -            |
| jpeg_compressibility    | smaller JPEG is better (DDPO)             | -                          | -            |
| jpeg_incompressibility  | larger JPEG is better (DDPO)              | -                          | -            |
| pickscore               | PickScore_v1                              | model dir (+ processor)    | train        |
| clipscore               | CLIP ViT-L/14 CLIPScore                   | model dir                  | train        |
| aesthetic               | LAION aesthetic predictor v2              | dir with .pth + CLIP-L     | train        |
| hpsv2                   | HPSv2.1 (OpenCLIP ViT-H-14 as CLIPModel)  | .pt or converted + tokenizer | train      |
| imagereward             | ImageReward (BLIP, transformers classes)  | .pt + med_config or converted, vocab.txt | train |
| ocr                     | OCR edit-distance match (RapidOCR)        | -                          | ocr          |
| http_judge / unifiedreward | VLM judge, OpenAI-compatible endpoint  | base URL (".../v1")        | -            |
Model imports happen only for the rewards named, so unused extras need not be installed. The
CLIP-family rewards preprocess on the training device (vgrpo.rewards.image_transform);
`python -m vgrpo.rewards.convert {hpsv2,imagereward} SRC DST` writes safetensors directories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from vgrpo.rewards.base import Reward, RewardSet


@dataclass
class RewardSpec:
    """One reward of a run: registry name, weight in the advantage, local path or URL, options."""

    name: str
    weight: float = 1.0
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _shapes(path, device, **options):
    from vgrpo.rewards.shapes import ShapesReward

    return ShapesReward(**options)


def _shapes_dense(path, device, **options):
    from vgrpo.rewards.shapes import DenseShapesReward

    return DenseShapesReward(**options)


def _jpeg(incompressible: bool):
    def build(path, device, **options):
        from vgrpo.rewards import jpeg

        return (jpeg.JpegIncompressibility if incompressible else jpeg.JpegCompressibility)(**options)

    return build


def _with_path(module: str, cls: str, takes_device: bool = True):
    def build(path, device, **options):
        import importlib

        from vgrpo.utils import hub

        reward_cls = getattr(importlib.import_module(f"vgrpo.rewards.{module}"), cls)
        path = hub.resolve(path, f"{cls} path")  # a hub id: its snapshot in the HF cache
        return reward_cls(path, device=device, **options) if takes_device else reward_cls(path, **options)

    return build


def _judge(default_name: str):
    def build(path, device, **options):
        from vgrpo.rewards.http_judge import HttpJudgeReward

        if not path:
            raise ValueError(f"reward {default_name!r} needs path = the endpoint URL, e.g. http://127.0.0.1:8000/v1")
        options.setdefault("name", default_name)
        options["model"] = options.get("model") or default_name
        return HttpJudgeReward(path, **options)

    build.judge = True  # takes the judge options (model, template, score range, key variable, ...)
    return build


def _ocr(path, device, **options):
    from vgrpo.rewards.ocr import OcrReward

    return OcrReward(**options)


BUILDERS: dict[str, Callable[..., Reward]] = {
    "shapes": _shapes,
    "shapes_dense": _shapes_dense,
    "jpeg_compressibility": _jpeg(incompressible=False),
    "jpeg_incompressibility": _jpeg(incompressible=True),
    "pickscore": _with_path("clip_similarity", "PickScoreReward"),
    "clipscore": _with_path("clip_similarity", "ClipScoreReward"),
    "aesthetic": _with_path("aesthetic", "AestheticReward"),
    "hpsv2": _with_path("hpsv2", "HPSv2Reward"),
    "imagereward": _with_path("image_reward", "ImageRewardReward"),
    "ocr": _ocr,
    "http_judge": _judge("http_judge"),
    "unifiedreward": _judge("unifiedreward"),
}

JUDGE_REWARDS = tuple(name for name, build in BUILDERS.items() if getattr(build, "judge", False))
"""Rewards served by an HTTP judge: they take the `reward.judge` options."""


def build_reward(name: str, path: str | None = None, *, device: str | torch.device = "cpu", **options) -> Reward:
    """Instantiate the reward registered as `name` (see the module table)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown reward {name!r}; known rewards: {sorted(BUILDERS)}")
    return BUILDERS[name](path, device, **options)


def build_reward_set(specs: Sequence[RewardSpec], *, device: str | torch.device = "cpu") -> RewardSet:
    """A RewardSet of the specs' rewards with their weights (unknown names fail before any load)."""
    unknown = [s.name for s in specs if s.name not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown rewards {unknown}; known rewards: {sorted(BUILDERS)}")
    rewards = [build_reward(s.name, s.path, device=device, **s.options) for s in specs]
    return RewardSet(rewards, [s.weight for s in specs])
