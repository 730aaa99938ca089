"""GPU speed switches for the denoiser, each off by default and applied in place.

    from vgrpo.accel.fp8 import convert_to_fp8            # FP8 training of linear layers (torchao)
    from vgrpo.accel.attention import set_attention_backend  # "sdpa" | "flash"
"""
