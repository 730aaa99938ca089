"""Build a transformers model whose every weight is loaded right after, skipping the random init.

Random init of a ViT-H CLIP (about 1B parameters) costs tens of seconds on a CPU and is discarded
by the strict `load_state_dict` that follows; transformers' `no_init_weights` turns it off (torch
init functions and `init_weights` become no-ops; buffers such as position ids are still built).
"""

from __future__ import annotations

import contextlib


def skip_weight_init():
    """Context manager: transformers' no_init_weights where this version has it, else a no-op."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older or newer transformers: init runs, only slower
        return contextlib.nullcontext()
    return no_init_weights()
