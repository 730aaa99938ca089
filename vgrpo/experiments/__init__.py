"""Experiments built on the trainer.

- `compare` (with `plan`, `runner`, `report`): train the runs of a TOML plan, each as
  `python -m vgrpo.train`, and report them; the shipped plan (plans/compare.toml) is V-GRPO against
  Flow-GRPO and the ablations of method.md;
- one-off measurements without training: `variance` (surrogate variance by pair-drawing scheme),
  `reward_stability` (how repeatable the shapes reward is; `legacy_shapes_verifier` is its
  baseline), `headroom` (mean and best-of-K of shapes models).
"""
