"""Experiments built on the trainer: V-GRPO against Flow-GRPO and the paper's ablations.

    python -m vgrpo.experiments.compare [--out runs/compare] [--only main|ablations|all] ...

One module per job:
- `plan`: the declarative run list (which configurations, seeds, shared budget, overrides);
- `resolve`: each run's validated trainer config, and the check that existing folders match it;
- `estimate`: the expected wall-clock of a plan before anything runs;
- `runner`: runs each planned training run (subprocess or in-process), skipping finished ones;
- `collect`: a run's metrics.jsonl -> eval points with cumulative NFE and training wall-clock;
- `aggregate`: mean / spread over seeds, and where one curve first reaches a target score;
- `report`: the results as data, written to results.json and results.csv;
- `markdown`: summary.md;
- `plots`: the PNG figures;
- `compare`: the command line tying them together;
- `variance`: the variance-reduction ablation measured on a fixed batch (no training).
"""
