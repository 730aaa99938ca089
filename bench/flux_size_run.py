"""Two trainer iterations of the FLUX.1-dev-size transformer on random weights (GPU check).

The whole trainer (rollout, rewards, scoring pass, LoRA update, checkpoint, export) runs on a
FluxAdapter whose transformer has FLUX.1-dev's config (12B parameters, bench/bench_flux_transformer.py)
in bf16 with random weights; text encoders and VAE are small random stand-ins of the right output
widths (CLIP pooled 768, T5 4096, 16-channel VAE), as their cost is not what is measured. Random
weights time like real ones, so nothing is downloaded. Writes per-iteration times and peak memory
into the JSON file `--out` (key "flux_size_trainer", other keys of the file kept).

    python -m bench.flux_size_run --out bench/results/nvidia_h200.json           # GPU, ~2-4 min
    python -m bench.flux_size_run --size tiny --out /tmp/tiny.json               # CPU smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.bench_flux_transformer import FLUX_DEV_CONFIG  # noqa: E402
from bench.memory import device_name  # noqa: E402

TINY_CONFIG = dict(
    patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
    num_attention_heads=2, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)
SIZES = {"flux": (FLUX_DEV_CONFIG, 512), "tiny": (TINY_CONFIG, 64)}  # transformer config, resolution


def flux_size_adapter(size: str, device: torch.device):
    """FluxAdapter: the `size` transformer (bf16 on GPU, float32 on CPU) and small random encoders / VAE."""
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel

    from tests.fixtures_tiny_models import _clip_text, _t5, _vae, clip_tokenizer, t5_tokenizer
    from vgrpo.models.flux import FluxAdapter

    config, resolution = SIZES[size]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(default)
    tokenizer = clip_tokenizer()
    text = _clip_text(CLIPTextModel, tokenizer, 768, 768, seed=1).to(device, dtype)
    t5 = _t5(4096, seed=2).to(device, dtype)
    vae = _vae(0.3611, 0.1159, seed=3).to(device, dtype)
    return FluxAdapter(transformer, vae, text, t5, tokenizer, t5_tokenizer(), resolution=resolution,
                       max_sequence_length=64, offload=False)


def run(size: str, out: Path) -> dict:
    from tests.trainer_setups import color_rewards, tiny_config
    from vgrpo.export import export
    from vgrpo.trainer.trainer import Trainer

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("a photo of a cat\na red cube on the left\n")
        cfg = tiny_config(
            tmp, job={"device": device.type}, rollout={"prompt_file": str(prompts), "steps": 4, "batch_size": 4},
            finetune={"mode": "lora", "lora_rank": 16, "lora_alpha": 32.0}, algorithm={"micro_batch": 2},
            parallel={"activation_checkpointing": True}, checkpoint={"every": 0}, optim={"ema_decay": 0.9},
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer = Trainer(cfg, adapter_factory=lambda c, d: flux_size_adapter(size, d), reward_factory=color_rewards)
        t_build = time.perf_counter() - t0
        trainer.train()
        t1 = time.perf_counter()
        export(trainer.run_dir, Path(tmp) / "lora", "lora")
        t_export = time.perf_counter() - t1
        keys = ("time_rollout_s", "time_reward_s", "time_update_s", "grad_norm", "reward_mean")
        result = {
            "size": size, "device": device_name(device), "transformer_parameters":
                sum(p.numel() for p in trainer.adapter.denoiser.parameters() if not p.requires_grad),
            "lora_parameters": sum(p.numel() for p in trainer.params),
            "images_per_iteration": cfg.rollout.prompts_per_iteration * cfg.rollout.group_size,
            "resolution": trainer.adapter.resolution, "build_s": t_build, "export_lora_s": t_export,
            "iterations": [{k: h[k] for k in keys if k in h} for h in trainer.history],
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        }
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["flux_size_trainer"] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="flux")
    ap.add_argument("--out", required=True, type=Path, help="JSON results file (updated, other keys kept)")
    args = ap.parse_args()
    print(json.dumps(run(args.size, args.out), indent=2))


if __name__ == "__main__":
    main()
