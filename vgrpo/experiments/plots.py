"""PNG figures of the comparison (matplotlib, Agg backend): held-out score against iterations,
cumulative NFE per image and training wall-clock (mean over seeds, min-max band, one line per
algorithm), and a bar chart of the ablations (final score and surrogate CVs)."""

from __future__ import annotations

from pathlib import Path

from vgrpo.experiments.aggregate import MeanCurve, VariantSummary

X_AXES = (
    ("iterations", "training iterations", lambda c: [float(i) for i in c.iterations]),
    ("nfe", "model evaluations per image (cumulative)", lambda c: c.nfe_mean),
    ("wallclock", "training wall-clock (s, evaluation excluded)", lambda c: c.seconds_mean),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_main_curves(curves: dict[str, MeanCurve], labels: dict[str, str], out_dir: Path) -> list[Path]:
    """score_vs_{iterations,nfe,wallclock}.png; `labels` maps curve key -> legend text."""
    plt = _pyplot()
    paths = []
    for name, xlabel, xs_of in X_AXES:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
        for key, curve in curves.items():
            xs = xs_of(curve)
            (line,) = ax.plot(xs, curve.score_mean, "o-", label=labels[key])
            ax.fill_between(xs, curve.score_min, curve.score_max, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out verifier score")
        ax.set_title("mean over seeds, band = min-max")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"score_vs_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_ablations(summaries: list[VariantSummary], path: Path) -> Path:
    """Horizontal bars: final held-out score (the V-GRPO default as a dashed line) and the mean
    surrogate CV overall and within groups, one row per configuration."""
    plt = _pyplot()
    labels = [s.variant.label for s in summaries]
    rows = list(range(len(summaries)))
    fig, (ax_score, ax_cv) = plt.subplots(1, 2, figsize=(11, 0.45 * len(summaries) + 1.6), dpi=120, sharey=True)
    scores = [s.final_score.mean for s in summaries]
    spread = [s.final_score.std or 0.0 for s in summaries]
    bars = ax_score.barh(rows, scores, xerr=spread, color="tab:blue", alpha=0.8)
    ax_score.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    ax_score.set_xlim(0, max(scores, default=0) * 1.2 or 1)
    if summaries and not summaries[0].variant.overrides:  # the default configuration comes first
        ax_score.axvline(scores[0], color="black", linestyle="--", linewidth=1, label=summaries[0].variant.label)
        ax_score.legend(loc="best")
    ax_score.set_xlabel("final held-out verifier score")
    ax_score.set_yticks(rows, labels)
    ax_score.invert_yaxis()
    ax_score.grid(axis="x", alpha=0.3)
    height = 0.4
    cv = [s.surrogate_cv.mean if s.surrogate_cv else 0.0 for s in summaries]
    cv_group = [s.surrogate_cv_within_group.mean if s.surrogate_cv_within_group else 0.0 for s in summaries]
    ax_cv.barh([r - height / 2 for r in rows], cv, height, label="surrogate CV", color="tab:orange")
    ax_cv.barh([r + height / 2 for r in rows], cv_group, height, label="within-group CV", color="tab:green")
    ax_cv.set_xlabel("coefficient of variation (mean over iterations)")
    ax_cv.grid(axis="x", alpha=0.3)
    ax_cv.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
