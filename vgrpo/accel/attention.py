"""Attention-backend switch for diffusers transformers: "sdpa" (PyTorch scaled_dot_product_attention,
the default) or "flash" (flash-attn 2, when installed).

Both go through diffusers' `dispatch_attention_fn`. FLUX's attention processor already routes
through it (its `_attention_backend` attribute picks the kernel); SD3's JointAttnProcessor2_0 calls
SDPA directly, so for "flash" (and, to keep one code path, for "sdpa" too) it is replaced by
`JointAttnDispatchProcessor`, the same computation in the [B, S, H, D] layout the dispatcher takes.
The built-in shapes world (an SD3 transformer) is covered by the same swap.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

BACKENDS = ("sdpa", "flash")


def _backend_enum(backend: str):
    from diffusers.models.attention_dispatch import AttentionBackendName

    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    return AttentionBackendName.NATIVE if backend == "sdpa" else AttentionBackendName.FLASH


def check_flash_available(device: torch.device | str) -> None:
    """Raise with the fix when flash-attn cannot run on `device`."""
    if importlib.util.find_spec("flash_attn") is None:
        raise ImportError(
            "attention backend 'flash' needs the flash-attn package, which is not installed: "
            "pip install 'vgrpo[flash]' (builds against the installed CUDA torch), or use attention backend 'sdpa'"
        )
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    _check_attention_backend_requirements(AttentionBackendName.FLASH)  # flash-attn too old -> RuntimeError
    if torch.device(device).type != "cuda":
        raise ValueError(f"attention backend 'flash' runs on CUDA devices only; the model is on {device}")


class JointAttnDispatchProcessor:
    """SD3 joint attention (image + text tokens in one softmax), as diffusers' JointAttnProcessor2_0,
    with the attention kernel chosen by `_attention_backend` through `dispatch_attention_fn`.

    hidden_states [B, N, D] (image tokens), encoder_hidden_states [B, S, D_ctx] or None
    -> [B, N, D] (and [B, S, D_ctx] when encoder states are given).
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        def heads(x: torch.Tensor) -> torch.Tensor:  # [B, L, H * Dh] -> [B, L, H, Dh]
            return x.unflatten(-1, (attn.heads, -1))

        n = hidden_states.shape[1]
        query = heads(attn.to_q(hidden_states))
        key = heads(attn.to_k(hidden_states))
        value = heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if encoder_hidden_states is not None:
            eq = heads(attn.add_q_proj(encoder_hidden_states))
            ek = heads(attn.add_k_proj(encoder_hidden_states))
            ev = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                eq = attn.norm_added_q(eq)
            if attn.norm_added_k is not None:
                ek = attn.norm_added_k(ek)
            query, key, value = (torch.cat(p, dim=1) for p in ((query, eq), (key, ek), (value, ev)))
        out = dispatch_attention_fn(
            query, key, value, backend=self._attention_backend, parallel_config=self._parallel_config
        )
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is not None:
            out, encoder_hidden_states = out[:, :n], out[:, n:]
            if not attn.context_pre_only:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, encoder_hidden_states) if encoder_hidden_states is not None else out


def set_attention_backend(model: nn.Module, backend: str = "sdpa") -> int:
    """Route every attention layer of `model` (a diffusers transformer) to `backend`, in place.

    Returns the number of attention layers switched. Raises ImportError naming the missing package
    for "flash" without flash-attn, ValueError for an unknown backend or a model with no attention
    layer it knows.
    """
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    name = _backend_enum(backend)
    if backend == "flash":
        param = next(model.parameters(), None)
        check_flash_available(param.device if param is not None else "cpu")
    switched = 0
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if processor is None:
            continue
        if isinstance(processor, JointAttnProcessor2_0):
            processor = JointAttnDispatchProcessor()
            module.set_processor(processor)
        if hasattr(processor, "_attention_backend"):
            processor._attention_backend = name
            switched += 1
    if switched == 0:
        raise ValueError(f"{type(model).__name__} has no attention layer routed through diffusers' dispatcher")
    return switched
