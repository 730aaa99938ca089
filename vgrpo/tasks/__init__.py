"""Tasks: what a run is evaluated on. An `Evaluator` (vgrpo.tasks.base) holds a fixed prompt set with
metadata and scores images of it; the trainer generates the images and calls it. Two kinds:
`vgrpo.tasks.shapes.ShapesEvaluator` (the built-in world's held-out split and verifier) and
`vgrpo.tasks.prompt_set.PromptSetEvaluator` (any prompt file, any rewards of the registry)."""
