"""Tiny random-weight FLUX.1 and SD 3.5 directories in the real diffusers layout (nothing downloaded).

Each builder assembles the real pipeline class (FluxPipeline / StableDiffusion3Pipeline) from tiny
components and writes it with `save_pretrained`, so model_index.json, the subfolders, configs,
safetensors weights and tokenizer files are exactly what the hub's directories hold:
- CLIP tokenizers: byte-level BPE vocabulary without merges (tests/tiny_clip.py);
- T5 tokenizer: a word-level `tokenizers` model over `WORDS`, appending </s>, as a fast tokenizer;
- VAE: AutoencoderKL with 4 resolution levels (8x downsampling, as the real VAEs) and 16 latent
  channels, scaling / shift factors of the real model;
- transformers: one or two blocks, width 32, dims multiples of 16 (so torchao FP8 can convert them).
Images are RESOLUTION x RESOLUTION = 64 x 64: FLUX packs 8 x 8 latents into 16 tokens of 64 channels.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import torch

from tests.tiny_clip import _byte_unicode_chars

RESOLUTION = 64
T5_LENGTH = 16
WORDS = "a an the red green blue small large cube sphere cat dog on of photo and left right".split()


def clip_tokenizer():
    """CLIPTokenizer over a byte-level vocabulary (every character one token), model_max_length 77."""
    from transformers import CLIPTokenizer

    chars = _byte_unicode_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def t5_tokenizer():
    """Word-level fast tokenizer with T5's special tokens (<pad> = 0, </s> = 1, <unk> = 2), </s> appended."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def _clip_text(cls, tokenizer, hidden: int, projection: int, seed: int):
    from transformers import CLIPTextConfig

    vocab = tokenizer.get_vocab()
    eos = vocab["<|endoftext|>"]
    cfg = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=projection,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=eos, pad_token_id=eos,
    )
    torch.manual_seed(seed)
    return cls(cfg)


def _t5(d_model: int, seed: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=len(WORDS) + 3, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    torch.manual_seed(seed)
    return T5EncoderModel(cfg)


def _vae(scaling_factor: float, shift_factor: float, seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=8,
        sample_size=RESOLUTION, scaling_factor=scaling_factor, shift_factor=shift_factor,
        use_quant_conv=False, use_post_quant_conv=False,
    )


def make_tiny_flux_dir(path: Path, seed: int = 0) -> Path:
    """Write a tiny FLUX.1-dev-layout directory (FluxPipeline.save_pretrained) into `path`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=_vae(0.3611, 0.1159, seed + 1),
        text_encoder=_clip_text(CLIPTextModel, tokenizer, 32, 32, seed + 2),
        tokenizer=tokenizer,
        text_encoder_2=_t5(32, seed + 3),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(str(path))
    return path


def make_tiny_sd3_dir(path: Path, seed: int = 0) -> Path:
    """Write a tiny SD 3.5 Medium-layout directory (StableDiffusion3Pipeline.save_pretrained) into `path`.

    Like SD 3.5 M: dual attention in the first block and RMS q/k norms. CLIP-L width 16, CLIP-G
    width 24 (concatenated 40, zero-padded to the T5 width 48), pooled 16 + 24 = 40.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    path.mkdir(parents=True, exist_ok=True)
    tok_l = clip_tokenizer()
    tok_g = clip_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=RESOLUTION // 8, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48, caption_projection_dim=32,
        pooled_projection_dim=40, pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(1.5305, 0.0609, seed + 1),
        text_encoder=_clip_text(CLIPTextModelWithProjection, tok_l, 16, 16, seed + 2),
        tokenizer=tok_l,
        text_encoder_2=_clip_text(CLIPTextModelWithProjection, tok_g, 24, 24, seed + 3),
        tokenizer_2=tok_g,
        text_encoder_3=_t5(48, seed + 4),
        tokenizer_3=t5_tokenizer(),
    )
    pipe.save_pretrained(str(path))
    return path


_BUILT: dict[str, Path] = {}


def _cached(kind: str, build) -> Path:
    """Build once per test process into a temporary directory removed at exit (tests that modify a
    directory copy it first)."""
    if kind not in _BUILT:
        root = Path(tempfile.mkdtemp(prefix=f"vgrpo-tiny-{kind}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _BUILT[kind] = build(root / kind)
    return _BUILT[kind]


def tiny_flux_dir() -> Path:
    """The tiny FLUX directory, shared by every test of the process (read-only by convention)."""
    return _cached("flux", make_tiny_flux_dir)


def tiny_sd3_dir() -> Path:
    """The tiny SD 3.5 M directory, shared by every test of the process (read-only by convention)."""
    return _cached("sd3", make_tiny_sd3_dir)
