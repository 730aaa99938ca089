"""The declarative run list of the comparison: configurations, seeds and the shared budget.

A *variant* is one configuration (a preset plus overrides); a *run* is a variant trained with one
seed. The main comparison is V-GRPO against Flow-GRPO over several seeds; the ablations change one
V-GRPO ingredient at a time (method.md sections 3 and 6) and run one seed by default. Every run of
a plan gets the same budget (iterations, prompts per iteration, group size, evaluation cadence and
size) through overrides, so no configuration sees more data than another, and the user's extra
overrides (`--set`) are applied last, to every run alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAIN_GROUP = "main"
ABLATION_GROUP = "ablations"
GROUPS = (MAIN_GROUP, ABLATION_GROUP)

# Overrides the plan owns: a `--set` of these would break run naming or resuming.
RESERVED_KEYS = ("job.name", "job.output_dir", "job.seed")


@dataclass(frozen=True)
class Variant:
    """One configuration: `key` names its run folders, `label` appears in tables and plots,
    `change` says in words what differs from V-GRPO's defaults, `algorithm` groups plot lines."""

    key: str
    label: str
    preset: str
    overrides: tuple[str, ...] = ()
    change: str = ""
    algorithm: str = "V-GRPO"


VGRPO = Variant("vgrpo", "V-GRPO", "shapes-cpu", change="defaults: batch-shared stratified pairs, "
                "N_MC 4, adaptive weighting, ratio clip 1e-2, no KL, no soft-clip")
FLOWGRPO = Variant("flowgrpo", "Flow-GRPO", "shapes-cpu-flowgrpo",
                   change="SDE rollouts, PPO over per-step log-probs", algorithm="Flow-GRPO")

MAIN_VARIANTS: tuple[Variant, ...] = (VGRPO, FLOWGRPO)


def _ablation(key: str, label: str, *overrides: str) -> Variant:
    return Variant(key, label, VGRPO.preset, tuple(f"--{o}" for o in overrides), change=", ".join(overrides))


# The baseline row of the ablation table is the V-GRPO run itself (shared with the main comparison).
ABLATION_VARIANTS: tuple[Variant, ...] = (
    VGRPO,
    _ablation("no-sharing", "no group sharing", "algorithm.sharing=none"),
    _ablation("no-stratification", "no stratification", "algorithm.stratified=false"),
    _ablation("v-weighting", "v-weighting", "algorithm.weighting=v"),
    _ablation("eps-weighting", "eps-weighting", "algorithm.weighting=eps"),
    _ablation("nmc-2", "N_MC = 2", "algorithm.num_pairs=2"),
    _ablation("nmc-8", "N_MC = 8", "algorithm.num_pairs=8"),
    _ablation("no-ratio-clip", "ratio clip off", "algorithm.clip_range=0"),
    # The behaviour KL of method.md needs a second pass (mu = 2); "mu = 2, KL off" separates the KL
    # from the extra pass. Both replace shapes-cpu's KL to the base model (beta 1, kl_target=reference).
    _ablation("mu-2", "mu = 2, KL off", "algorithm.mu=2", "algorithm.beta=0"),
    _ablation("kl-on", "behaviour KL (beta 0.3, mu = 2)", "algorithm.beta=0.3", "algorithm.kl_target=behaviour",
              "algorithm.mu=2"),
    _ablation("soft-clip-on", "advantage soft-clip on (eta 3)", "reward.soft_clip_eta=3"),
)


@dataclass(frozen=True)
class Budget:
    """What every run of a plan gets: iterations of prompts x group_size images, evaluations every
    `eval_every` iterations (and before the first and after the last) on `eval_images_per_category`
    held-out images per category. Checkpoints follow the evaluations, so an interrupted run resumes
    from its last evaluation point."""

    iterations: int = 30
    prompts_per_iteration: int = 8
    group_size: int = 8
    eval_every: int = 10
    eval_images_per_category: int = 16

    def overrides(self) -> tuple[str, ...]:
        return (
            f"--job.iterations={self.iterations}",
            f"--rollout.prompts_per_iteration={self.prompts_per_iteration}",
            f"--rollout.group_size={self.group_size}",
            f"--eval.every={self.eval_every}",
            f"--eval.images_per_category={self.eval_images_per_category}",
            f"--checkpoint.every={self.eval_every}",
        )

    def problems(self) -> list[str]:
        """What is wrong with this budget, in words (empty when valid)."""
        out = []
        if self.iterations < 1:
            out.append(f"--iterations must be >= 1, got {self.iterations}")
        if self.eval_every < 1:
            out.append(f"--eval-every must be >= 1 (the comparison needs score curves), got {self.eval_every}")
        elif self.eval_every > self.iterations >= 1:
            out.append(f"--eval-every ({self.eval_every}) must be <= --iterations ({self.iterations}): "
                       "otherwise a curve has only its two end points")
        return out


@dataclass(frozen=True)
class RunSpec:
    """One training run of the plan: a variant, a seed, and where it goes."""

    variant: Variant
    seed: int
    out_dir: Path
    budget: Budget
    extra_overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.variant.key}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.name

    def overrides(self) -> list[str]:
        """Config overrides in the order they apply: identity, budget, variant, then the user's."""
        return [
            f"--job.name={self.name}",
            f"--job.output_dir={self.out_dir}",
            f"--job.seed={self.seed}",
            "--logging.tensorboard=false",
            "--logging.progress=false",
            *self.budget.overrides(),
            *self.variant.overrides,
            *self.extra_overrides,
        ]

    def argv(self) -> list[str]:
        """Arguments of `vgrpo.train.main` for this run."""
        return [f"--preset={self.variant.preset}", *self.overrides()]


@dataclass(frozen=True)
class Plan:
    """Which variants run with which seeds; `runs()` lists each distinct run once."""

    out_dir: Path
    budget: Budget
    main_variants: tuple[Variant, ...]
    ablation_variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    ablation_seeds: tuple[int, ...]
    extra_overrides: tuple[str, ...] = ()

    def spec(self, variant: Variant, seed: int) -> RunSpec:
        return RunSpec(variant, seed, self.out_dir, self.budget, self.extra_overrides)

    def runs(self) -> list[RunSpec]:
        """Main runs first, then ablations; a run in both (V-GRPO, shared seeds) appears once."""
        out: dict[str, RunSpec] = {}
        for variant in self.main_variants:
            for seed in self.seeds:
                out.setdefault(f"{variant.key}-seed{seed}", self.spec(variant, seed))
        for variant in self.ablation_variants:
            for seed in self.ablation_seeds:
                out.setdefault(f"{variant.key}-seed{seed}", self.spec(variant, seed))
        return list(out.values())


class PlanError(ValueError):
    """A plan that cannot run; the message says which argument is wrong and how."""


def normalise_override(text: str) -> str:
    """`section.key=value` or `--section.key=value` -> `--section.key=value`, checked for shape."""
    body = text[2:] if text.startswith("--") else text
    dotted = body.split("=", 1)[0]
    if "=" not in body or "." not in dotted or not all(dotted.split(".", 1)):
        raise PlanError(f"--set {text!r} must look like section.key=value, e.g. rollout.steps=6")
    if dotted in RESERVED_KEYS:
        raise PlanError(f"--set {dotted} is owned by the comparison (run folders are <out>/<variant>-seed<k>): "
                        "use --out and --seeds instead")
    return f"--{body}"


def build_plan(
    out_dir: str | Path,
    *,
    only: str = "all",
    seeds: tuple[int, ...] = (0, 1, 2),
    ablation_seeds: tuple[int, ...] = (0,),
    budget: Budget = Budget(),
    extra_overrides: tuple[str, ...] = (),
    variants: tuple[str, ...] = (),
) -> Plan:
    """The plan for `only` = "main", "ablations" or "all", restricted to the variant keys in
    `variants` when given, checked for argument mistakes."""
    problems = list(budget.problems())
    if only not in (*GROUPS, "all"):
        problems.append(f"--only must be main, ablations or all, got {only!r}")
    main = MAIN_VARIANTS if only in (MAIN_GROUP, "all") else ()
    ablations = ABLATION_VARIANTS if only in (ABLATION_GROUP, "all") else ()
    if variants:
        known = [v.key for v in (*MAIN_VARIANTS, *ABLATION_VARIANTS[1:])]
        unknown = [k for k in variants if k not in known]
        if unknown:
            problems.append(f"--variants: unknown {', '.join(map(repr, unknown))}; variants are {', '.join(known)}")
        main = tuple(v for v in main if v.key in variants)
        ablations = tuple(v for v in ablations if v.key in variants)
        if not unknown and not main and not ablations:
            problems.append(f"--variants {' '.join(variants)} selects no run of --only {only}")
    for flag, values in (("--seeds", seeds), ("--ablation-seeds", ablation_seeds)):
        if not values:
            problems.append(f"{flag} needs at least one seed")
        elif len(set(values)) != len(values):
            problems.append(f"{flag} repeats a seed: {list(values)}")
        elif min(values) < 0:
            problems.append(f"{flag} must be >= 0, got {list(values)}")
    extra: list[str] = []
    for text in extra_overrides:
        try:
            extra.append(normalise_override(text))
        except PlanError as exc:
            problems.append(str(exc))
    if problems:
        raise PlanError("invalid comparison arguments:\n  - " + "\n  - ".join(problems))
    return Plan(
        out_dir=Path(out_dir),
        budget=budget,
        main_variants=main,
        ablation_variants=ablations,
        seeds=tuple(seeds),
        ablation_seeds=tuple(ablation_seeds),
        extra_overrides=tuple(extra),
    )
