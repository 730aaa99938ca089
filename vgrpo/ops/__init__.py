"""Public, reusable ELBO ops of V-GRPO (no diffusers/transformers/trainer imports).

    from vgrpo.ops import elbo_surrogate, noise_latents
"""

from vgrpo.ops.elbo import elbo_surrogate
from vgrpo.ops.noising import noise_latents
from vgrpo.ops.reference import ElboTerms

__all__ = ["ElboTerms", "elbo_surrogate", "noise_latents"]
