"""The V-GRPO trainer: typed config and presets, the loop, parallelism, checkpoints, logging."""

from vgrpo.trainer.config import Config, ConfigError, apply_overrides, validate
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS, load_config

__all__ = ["DEFAULT_PRESET", "PRESETS", "Config", "ConfigError", "apply_overrides", "load_config", "validate"]
