"""The shapes world: a procedural text-to-image task with an exact verifier, small enough for a CPU.

- `prompts`: grammar, parser, GenEval-style categories, fixed train / held-out split.
- `render`: ground-truth images for any prompt; `geometry`: spatial relations.
- `detect` + `verify`: the exact verifier behind `vgrpo.rewards.shapes`.
- `text`: offline word-level tokenizer and small CLIP text encoder.
"""
