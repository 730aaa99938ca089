"""`ShapesAdapter`: the built-in shapes-world model (pixel-space MMDiT + small CLIP text encoder).

The denoiser is a diffusers `SD3Transformer2DModel` (the SD 3.5 family) working directly on pixels:
latents are images mapped to [-1, 1], latent_shape = (3, S, S) with S = 32. The text encoder is a
transformers `CLIPTextModelWithProjection` over the grammar's word vocabulary; it is trained with
the denoiser by `python -m vgrpo.pretrain` and frozen afterwards (RL trains the denoiser only).
Saved models are a folder with config.json, denoiser.safetensors and text_encoder.safetensors;
the shipped base model lives in `vgrpo/assets/shapes_web` (see `shipped_model_path`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import torch
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextModelWithProjection

from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.models.local_dir import read_json
from vgrpo.models.mmdit import mmdit_velocity
from vgrpo.utils import hub
from vgrpo.utils.atomic import write_atomically
from vgrpo.world.text import build_text_encoder, build_tokenizer, encode, text_encoder_config, tokenize

IMAGE_SIZE = 32
# The model's own sampling defaults (saved in config.json), read by `vgrpo.tasks.shapes.generate_images`.
DEFAULT_SAMPLING = {"solver": "dpm++2m", "steps": 12, "shift": 1.0, "guidance": 1.0}
PREDICTIONS = ("v", "x")
X_PREDICTION_MIN_T = 1e-3  # v = (z - x_hat) / max(t, this): only guards the division as t -> 0


def velocity_from_output(out: torch.Tensor, z: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    """The velocity a denoiser output stands for.

    Args:
        out: [B, C, H, W] denoiser output; z: [B, C, H, W] its noised input; t: [B] in (0, 1].
        prediction: "v" (the output is the velocity eps - x0) or "x" (the output is the clean
            image x0; v = (z - x0) / max(t, X_PREDICTION_MIN_T)).
    Returns:
        v: [B, C, H, W] in out's dtype.
    """
    if prediction == "v":
        return out
    if prediction != "x":
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    scale = t.clamp_min(X_PREDICTION_MIN_T).view(-1, *([1] * (z.dim() - 1))).to(out.dtype)
    return (z.to(out.dtype) - out) / scale


def default_denoiser_config(**overrides: Any) -> dict[str, Any]:
    """The built-in MMDiT: 32x32x3 pixels, patch 4 (64 tokens), 4 joint blocks, width 96."""
    cfg = dict(
        sample_size=IMAGE_SIZE,
        patch_size=4,
        in_channels=3,
        out_channels=3,
        num_layers=4,
        attention_head_dim=32,
        num_attention_heads=3,
        joint_attention_dim=64,
        caption_projection_dim=96,
        pooled_projection_dim=64,
        pos_embed_max_size=IMAGE_SIZE // 4,
    )
    cfg.update(overrides)
    return cfg


def default_text_config(**overrides: Any) -> dict[str, Any]:
    cfg = dict(hidden_size=64, layers=2, heads=2, projection_dim=64)
    cfg.update(overrides)
    return cfg


SHIPPED_MODELS = {"web": "shapes_web", "clean": "shapes_base"}


def shipped_model_path(captions: str = "web") -> Path:
    """Folder of a base model shipped inside the package. "web" (the default base of every command):
    `assets/shapes_web`, the web-caption fine-tune (docs/world.md) of the clean-caption pretrained
    model; it can draw every prompt but follows prompts loosely, as real text-to-image models do.
    "clean": `assets/shapes_base`, the model pretrained on true captions (the fine-tune's start)."""
    if captions not in SHIPPED_MODELS:
        raise ValueError(f"shipped model captions must be one of {sorted(SHIPPED_MODELS)}, got {captions!r}")
    return Path(str(resources.files("vgrpo") / "assets" / SHIPPED_MODELS[captions]))


class ShapesAdapter(ModelAdapter):
    """Pixel-space MMDiT for the shapes world.

    latent_shape = (3, 32, 32); latents are 2 * image - 1. Conditioning tensors:
    encoder_hidden_states [B, 12, 64] and pooled_projections [B, 64].
    """

    def __init__(
        self,
        denoiser: SD3Transformer2DModel,
        text_encoder: CLIPTextModelWithProjection,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.denoiser = denoiser
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = build_tokenizer()
        size = int(denoiser.config.sample_size)
        self.latent_shape = (int(denoiser.config.in_channels), size, size)
        self.config = dict(config or {})
        self.sampling = dict(DEFAULT_SAMPLING, **self.config.get("sampling", {}))
        self.prediction = str(self.config.get("prediction", "v"))
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"model config 'prediction' must be one of {PREDICTIONS}, got {self.prediction!r}")
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # Construction ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls, denoiser_config: dict[str, Any], text_config: dict[str, Any], seed: int = 0, prediction: str = "v"
    ) -> ShapesAdapter:
        """Freshly initialised model (reproducible from `seed`); `prediction` as `velocity_from_output`."""
        denoiser, text = cls._build_modules(denoiser_config, text_config, seed)
        return cls(denoiser, text, {"denoiser": denoiser_config, "text_encoder": text_config, "prediction": prediction})

    @staticmethod
    def _build_modules(
        denoiser_config: dict[str, Any], text_config: dict[str, Any], seed: int = 0
    ) -> tuple[SD3Transformer2DModel, CLIPTextModelWithProjection]:
        tcfg = text_encoder_config(**text_config)
        if denoiser_config["joint_attention_dim"] != tcfg.hidden_size:
            raise ValueError(
                f"joint_attention_dim ({denoiser_config['joint_attention_dim']}) must equal the text "
                f"hidden_size ({tcfg.hidden_size})"
            )
        if denoiser_config["pooled_projection_dim"] != tcfg.projection_dim:
            raise ValueError(
                f"pooled_projection_dim ({denoiser_config['pooled_projection_dim']}) must equal the "
                f"text projection_dim ({tcfg.projection_dim})"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            denoiser = SD3Transformer2DModel(**denoiser_config)
        text = build_text_encoder(tcfg, seed=seed + 1)
        return denoiser, text

    @classmethod
    def random(cls, seed: int = 0, **tiny_config_overrides: Any) -> ShapesAdapter:
        """Random weights, the shipped architecture unless overridden (e.g. num_layers=1), for tests."""
        return cls.build(default_denoiser_config(**tiny_config_overrides), default_text_config(), seed)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> ShapesAdapter:
        """Load a saved model folder or hub id (`vgrpo.utils.hub`; default: the shipped base model)."""
        folder = Path(hub.resolve(str(path), "model folder")) if path is not None else shipped_model_path()
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"no config.json in model folder {folder}")
        config = read_json(cfg_file)
        for key in ("denoiser", "text_encoder"):
            if key not in config:
                raise ValueError(f"{cfg_file} lacks the {key!r} section")
        model = cls(*cls._build_modules(config["denoiser"], config["text_encoder"]), config)
        model.denoiser.load_state_dict(load_file(str(folder / "denoiser.safetensors")))
        model.text_encoder.load_state_dict(load_file(str(folder / "text_encoder.safetensors")))
        return model.to(device, dtype)

    def save_pretrained(self, path: str | Path, extra_config: dict[str, Any] | None = None) -> None:
        """Write denoiser.safetensors, text_encoder.safetensors, then config.json to `path`.

        Each file is written under a temporary name and renamed into place, config last, so a
        kill while saving leaves every file whole (the config may describe the previous save).
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = dict(self.config, sampling=self.sampling, prediction=self.prediction, **(extra_config or {}))
        for name, module in (("denoiser", self.denoiser), ("text_encoder", self.text_encoder)):
            tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            write_atomically(folder / f"{name}.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        write_atomically(folder / "config.json", lambda tmp: tmp.write_text(text))

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> ShapesAdapter:
        self.denoiser.to(device=device)
        if dtype is not None and dtype != next(self.denoiser.parameters()).dtype:
            self.denoiser.to(dtype=dtype)
        self.text_encoder.to(device=device)  # text side stays float32; its outputs are cast
        self._cache.clear()
        return self

    def forget_prompt_encodings(self) -> None:
        """Drop the cached text-encoder outputs; call it after the text encoder's weights change."""
        self._cache.clear()

    # ModelAdapter ---------------------------------------------------------------------------
    def _text(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # One prompt per encoder call: batched matmuls round differently with the batch size, so a
        # prompt's encoding would depend on which other prompts were new in the same call, and a
        # resumed run (whose cache starts empty) would drift from an uninterrupted one.
        for p in dict.fromkeys(prompts):
            if p not in self._cache:
                with torch.no_grad():
                    hidden, pooled = encode(self.text_encoder, tokenize(self.tokenizer, [p]))
                self._cache[p] = (hidden[0], pooled[0])
        hidden = torch.stack([self._cache[p][0] for p in prompts])
        pooled = torch.stack([self._cache[p][1] for p in prompts])
        return hidden, pooled

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """encoder_hidden_states [P, 12, 64], pooled_projections [P, 64]; cached per prompt."""
        if isinstance(prompts, str):
            raise ValueError("encode_prompts takes a sequence of prompts, got a single str")
        hidden, pooled = self._text(prompts)
        dtype = next(self.denoiser.parameters()).dtype
        return Conditioning(
            {"encoder_hidden_states": hidden.to(self.device, dtype), "pooled_projections": pooled.to(self.device, dtype)}
        )

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The empty prompt's conditioning repeated batch_size times."""
        return self.encode_prompts([""]).repeat_interleave(batch_size)

    def velocity(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """z [B, 3, 32, 32], t [B] in (0, 1] -> v [B, 3, 32, 32] (denoiser dtype)."""
        self.check_velocity_inputs(z, t, cond)
        out = mmdit_velocity(self.denoiser, z, t, cond, next(self.denoiser.parameters()).dtype)
        return velocity_from_output(out, z, t, self.prediction)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 3, 32, 32] latents in [-1, 1] -> images [B, 3, 32, 32] float32 in [0, 1]."""
        return ((latents.float() + 1.0) * 0.5).clamp(0.0, 1.0)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, 32, 32] in [0, 1] -> latents 2 * images - 1."""
        return images * 2.0 - 1.0

    def transformer_blocks(self) -> list[nn.Module]:
        return list(self.denoiser.transformer_blocks)


def parameter_counts(model: ShapesAdapter) -> dict[str, int]:
    """Parameter counts of the denoiser and the text encoder."""
    return {
        "denoiser": sum(p.numel() for p in model.denoiser.parameters()),
        "text_encoder": sum(p.numel() for p in model.text_encoder.parameters()),
    }


__all__ = ["ShapesAdapter", "velocity_from_output", "default_denoiser_config", "default_text_config", "shipped_model_path", "SHIPPED_MODELS", "parameter_counts"]
