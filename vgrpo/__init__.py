"""vgrpo: a kernel-optimized engine for V-GRPO (Variational GRPO).

`vgrpo.ops` (the fused ELBO surrogate and noising ops) imports without diffusers, transformers or
the trainer, so other diffusion-RL code can reuse it on its own.
"""

__version__ = "0.1.0"
