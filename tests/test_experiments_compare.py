"""The comparison of V-GRPO against Flow-GRPO and the ablations (`vgrpo.experiments`): the
collector on synthetic metrics, the reach interpolation, the report files, the CLI's plan and
argument errors, and one end-to-end run of two tiny V-GRPO trainings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vgrpo.experiments import compare
from vgrpo.experiments.aggregate import GAIN, SCORE, first_reach, mean_curve, target_check
from vgrpo.experiments.collect import MetricsError, collect_plan, collect_run
from vgrpo.experiments.plan import FLOWGRPO, VGRPO, Budget, PlanError, build_plan
from vgrpo.experiments.resolve import resolve_config
from vgrpo.experiments.runner import launch_subprocess

CATEGORIES = ("colors", "counting")


def train_record(iteration: int, *, nfe=(8.0, 3.0, 4.0), seconds=(1.0, 0.5, 2.5), cv=0.2, **extra) -> dict:
    record = {"iteration": iteration, "kind": "train", "reward_mean": 0.1,
              "time_rollout_s": seconds[0], "time_reward_s": seconds[1], "time_update_s": seconds[2],
              "surrogate_cv": cv, "surrogate_cv_within_group": cv / 4, **extra}
    if nfe is not None:
        record.update(nfe_rollout=nfe[0], nfe_old=nfe[1], nfe_update=nfe[2])
    return record


def eval_record(iteration: int, score: float) -> dict:
    record = {"iteration": iteration, "kind": "eval", "score/overall": score, "accuracy/overall": score / 2,
              "time_eval_s": 99.0}
    for i, c in enumerate(CATEGORIES):
        record[f"score/{c}"] = score + 0.01 * i
        record[f"accuracy/{c}"] = score / 2
    return record


def write_metrics(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def fake_run(spec, scores: list[float], *, every: int, nfe=(8.0, 3.0, 4.0), seconds=(1.0, 0.5, 2.5)) -> None:
    """A finished run folder of `spec` whose evaluations at 0, every, 2 every, ... score `scores`."""
    iterations = every * (len(scores) - 1)
    records = []
    for i in range(iterations + 1):
        if i % every == 0:
            records.append(eval_record(i, scores[i // every]))
        if i < iterations:
            cv = 0.3 if spec.variant.key == "no-sharing" else 0.1
            records.append(train_record(i, nfe=nfe, seconds=seconds, cv=cv))
    write_metrics(spec.run_dir / "metrics.jsonl", records)
    (spec.run_dir / "config.json").write_text(json.dumps(resolve_config(spec).to_dict()))
    (spec.run_dir / "summary.json").write_text("{}")


# ----------------------------------------------------------------------------- collector


def test_collector_sums_nfe_and_training_time_up_to_each_evaluation(tmp_path):
    records = [eval_record(0, 0.10)]
    for i in range(4):
        records.append(train_record(i, seconds=(1.0 + i, 0.5, 2.0), cv=0.1 * (i + 1)))
        if i in (1, 3):
            records.append(eval_record(i + 1, 0.2 + 0.1 * i))
    curve = collect_run(write_metrics(tmp_path / "metrics.jsonl", records))
    assert [p.iteration for p in curve.points] == [0, 2, 4]
    assert [p.nfe_per_image for p in curve.points] == [0.0, 30.0, 60.0]
    # rollout 1+2 (+3+4) s, reward and update every iteration; evaluation time is not counted
    assert [p.train_seconds for p in curve.points] == pytest.approx([0.0, 3.0 + 2 * 2.5, 10.0 + 4 * 2.5])
    assert curve.points[1].score == pytest.approx(0.3) and curve.points[1].accuracy == pytest.approx(0.15)
    assert curve.points[2].category_scores == pytest.approx({"colors": 0.5, "counting": 0.51})
    assert curve.surrogate_cv == pytest.approx(0.25) and curve.surrogate_cv_within_group == pytest.approx(0.0625)
    assert curve.train_iterations == 4


def test_missing_nfe_keys_are_an_error_naming_file_record_and_keys(tmp_path):
    records = [eval_record(0, 0.1), train_record(0, nfe=None), eval_record(1, 0.2)]
    path = write_metrics(tmp_path / "metrics.jsonl", records)
    with pytest.raises(MetricsError) as info:
        collect_run(path)
    message = str(info.value)
    assert str(path) in message and "iteration 0" in message
    assert "nfe_rollout, nfe_old, nfe_update" in message


def test_broken_logs_are_errors(tmp_path):
    gap = write_metrics(tmp_path / "gap.jsonl",
                        [eval_record(0, 0.1), train_record(0), train_record(2), eval_record(3, 0.2)])
    with pytest.raises(MetricsError, match=r"iterations 0\.\.1 once each, got \[0, 2\]"):
        collect_run(gap)
    no_eval = write_metrics(tmp_path / "no_eval.jsonl", [train_record(0)])
    with pytest.raises(MetricsError, match="no held-out evaluation"):
        collect_run(no_eval)
    with pytest.raises(MetricsError, match="does not exist"):
        collect_run(tmp_path / "absent.jsonl")
    early = write_metrics(tmp_path / "early.jsonl", [eval_record(0, 0.1), train_record(0), eval_record(2, 0.2)])
    with pytest.raises(MetricsError, match="after 1 train records"):
        collect_run(early)


# ----------------------------------------------------------------------------- reach


def test_first_reach_interpolates_linearly_between_points():
    xs, ys = [0.0, 10.0, 20.0, 30.0], [0.10, 0.20, 0.40, 0.35]
    assert first_reach(xs, ys, 0.30) == pytest.approx(15.0)
    assert first_reach(xs, ys, 0.40) == pytest.approx(20.0)  # exactly on a point
    assert first_reach(xs, ys, 0.05) == 0.0  # already there at the start
    assert first_reach(xs, ys, 0.41) is None  # never
    with pytest.raises(ValueError, match="non-decreasing"):
        first_reach([0.0, 2.0, 1.0], [0.0, 0.1, 0.2], 0.1)


def test_target_check_on_mean_curves_reached_and_not_reached(tmp_path):
    plan = build_plan(tmp_path, only="main", seeds=(0, 1), budget=Budget(iterations=4, eval_every=2))
    # V-GRPO: cheaper iterations (NFE 15, 4 s); Flow-GRPO: NFE 20, 8 s.
    fake_run(plan.spec(VGRPO, 0), [0.10, 0.30, 0.50], every=2)
    fake_run(plan.spec(VGRPO, 1), [0.10, 0.20, 0.40], every=2)
    fake_run(plan.spec(FLOWGRPO, 0), [0.20, 0.25, 0.30], every=2, nfe=(10.0, 0.0, 10.0), seconds=(2.0, 0.5, 5.5))
    fake_run(plan.spec(FLOWGRPO, 1), [0.20, 0.25, 0.30], every=2, nfe=(10.0, 0.0, 10.0), seconds=(2.0, 0.5, 5.5))
    results, missing = collect_plan(plan)
    assert not missing
    v = mean_curve([r for r in results if r.spec.variant is VGRPO])
    f = mean_curve([r for r in results if r.spec.variant is FLOWGRPO])
    assert v.score_mean == pytest.approx([0.10, 0.25, 0.45]) and v.score_min == pytest.approx([0.10, 0.20, 0.40])
    t = target_check(v, f, "V-GRPO", "Flow-GRPO", SCORE)
    # target 0.30 lies between iteration 2 (0.25) and 4 (0.45): a quarter of the way, iteration 2.5
    assert t.target_score == pytest.approx(0.30) and t.reach_iteration == pytest.approx(2.5)
    assert t.reach_nfe == pytest.approx(2.5 * 15) and t.reach_seconds == pytest.approx(2.5 * 4)
    assert t.nfe_fraction == pytest.approx(37.5 / 80) and t.seconds_fraction == pytest.approx(10 / 32)
    gain = target_check(f, v, "Flow-GRPO", "V-GRPO", GAIN)  # Flow-GRPO gains 0.10, V-GRPO needs 0.35
    assert gain.target_score == pytest.approx(0.35) and not gain.reached and gain.nfe_fraction is None


def test_mean_curve_needs_the_same_evaluation_points(tmp_path):
    plan = build_plan(tmp_path, only="main", seeds=(0, 1), budget=Budget(iterations=4, eval_every=2))
    fake_run(plan.spec(VGRPO, 0), [0.1, 0.2, 0.3], every=2)
    fake_run(plan.spec(VGRPO, 1), [0.1, 0.2, 0.3, 0.4, 0.5], every=1)
    results, _ = collect_plan(plan)
    with pytest.raises(ValueError, match="different iterations"):
        mean_curve(results)


# ----------------------------------------------------------------------------- report files


def test_report_only_writes_tables_csv_json_and_plots(tmp_path, capsys):
    budget = ["--iterations", "4", "--eval-every", "2"]
    plan = build_plan(tmp_path, seeds=(0, 1), budget=Budget(iterations=4, eval_every=2),
                      variants=("vgrpo", "flowgrpo", "no-sharing"))
    fake_run(plan.spec(VGRPO, 0), [0.10, 0.30, 0.50], every=2)
    fake_run(plan.spec(VGRPO, 1), [0.10, 0.20, 0.40], every=2)
    fake_run(plan.spec(FLOWGRPO, 0), [0.20, 0.25, 0.30], every=2, nfe=(10.0, 0.0, 10.0))
    ablation = plan.ablation_variants[1]
    fake_run(plan.spec(ablation, 0), [0.10, 0.12, 0.15], every=2)
    code = compare.main(["--out", str(tmp_path), "--seeds", "0", "1", "--variants", "vgrpo", "flowgrpo", "no-sharing",
                         "--report-only", *budget])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "V-GRPO reaches Flow-GRPO's final score 0.300" in out
    for name in ("results.json", "results.csv", "summary.md", "score_vs_iterations.png", "score_vs_nfe.png",
                 "score_vs_wallclock.png", "ablations.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 4 * 3  # four finished runs x three evaluation points
    assert {r["run"] for r in rows} == {"vgrpo-seed0", "vgrpo-seed1", "flowgrpo-seed0", "no-sharing-seed0"}
    last = next(r for r in rows if r["run"] == "flowgrpo-seed0" and r["iteration"] == "4")
    assert float(last["cumulative_nfe_per_image"]) == 80.0 and float(last["score_counting"]) == pytest.approx(0.31)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["missing_runs"] == {"flowgrpo-seed1": "not started"}
    assert [s["variant"]["key"] for s in data["ablations"]] == ["vgrpo", "no-sharing"]
    assert data["target_checks"][0]["reached"] is True
    summary = (tmp_path / "summary.md").read_text()
    assert "| V-GRPO | 0, 1 | ODE dpm++2m, 8 steps | dpm++2m, 8 steps | 0.450 ± 0.071 | 0.350 ± 0.071 |" in summary
    assert "| Flow-GRPO | 0 | SDE, 10 steps | dpm++2m, 8 steps | 0.300 | 0.100 |" in summary
    assert "| no group sharing | `algorithm.sharing=none` | 0.150 | 0.050 | 0.300 | 0.075 |" in summary
    assert "| gain over iteration 0 | +0.100 | 1.3 |" in summary  # V-GRPO's mean gain passes 0.10 at 2 x 0.10 / 0.15
    assert "different samplers" not in summary  # both evaluate with the same ODE sampler
    assert "flowgrpo-seed1: not started" in summary


def test_report_refuses_runs_without_nfe(tmp_path, capsys):
    plan = build_plan(tmp_path, only="ablations", budget=Budget(iterations=2, eval_every=1), variants=("vgrpo",))
    spec = plan.runs()[0]
    fake_run(spec, [0.1, 0.2, 0.3], every=1)
    write_metrics(spec.run_dir / "metrics.jsonl", [eval_record(0, 0.1), train_record(0, nfe=None), eval_record(1, 0.2)])
    code = compare.main(["--out", str(tmp_path), "--only", "ablations", "--variants", "vgrpo", "--iterations", "2",
                         "--eval-every", "1", "--report-only"])
    assert code == 1
    assert "nfe_rollout" in capsys.readouterr().err
    assert not (tmp_path / "results.csv").exists()


# ----------------------------------------------------------------------------- CLI


def test_dry_run_prints_every_run_with_nfe_and_estimate(tmp_path, capsys):
    assert compare.main(["--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in ("vgrpo-seed2", "flowgrpo-seed0", "no-sharing-seed0", "no-stratification-seed0", "v-weighting-seed0",
                 "eps-weighting-seed0", "nmc-2-seed0", "nmc-8-seed0", "no-ratio-clip-seed0", "kl-on-seed0",
                 "soft-clip-on-seed0"):
        assert name in out
    assert "16 runs" in out and "estimated training time of the runs left" in out
    assert "8+3+8" in out  # mu = 2: twice the update forwards; scoring skips the first of 4 minibatches
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_plan_shares_the_budget_and_applies_user_overrides_last(tmp_path):
    plan = build_plan(tmp_path, seeds=(0, 1), budget=Budget(iterations=12, eval_every=4),
                      extra_overrides=("rollout.steps=6",))
    configs = {s.name: resolve_config(s) for s in plan.runs() if s.variant.key in ("vgrpo", "flowgrpo", "kl-on")}
    for cfg in configs.values():
        assert (cfg.job.iterations, cfg.rollout.prompts_per_iteration, cfg.rollout.group_size) == (12, 8, 8)
        assert (cfg.eval.every, cfg.eval.images_per_category, cfg.rollout.steps) == (4, 16, 6)
    assert configs["flowgrpo-seed1"].algorithm.name == "flowgrpo" and configs["flowgrpo-seed1"].job.seed == 1
    assert (configs["kl-on-seed0"].algorithm.beta, configs["kl-on-seed0"].algorithm.mu) == (0.3, 2)
    assert len(plan.runs()) == 2 * 2 + 10  # the ablations' V-GRPO baseline is the main seed-0 run


@pytest.mark.parametrize("argv, message", [
    (["--set", "rollout.steps"], "must look like section.key=value"),
    (["--set", "job.seed=3"], "owned by the comparison"),
    (["--set", "algorithm.no_such_key=1"], "unknown config key algorithm.no_such_key"),
    (["--set", "algorithm.num_pairs=0"], "algorithm.num_pairs (N_MC) must be >= 1"),
    (["--eval-every", "0"], "--eval-every must be >= 1"),
    (["--iterations", "5", "--eval-every", "10"], "must be <= --iterations"),
    (["--seeds", "1", "1"], "--seeds repeats a seed"),
    (["--variants", "nmc-3"], "unknown 'nmc-3'"),
    (["--only", "main", "--variants", "nmc-2"], "selects no run of --only main"),
])
def test_cli_argument_errors_exit_2_naming_the_problem(tmp_path, capsys, argv, message):
    assert compare.main(["--out", str(tmp_path), "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_says_when_the_flowgrpo_baseline_is_missing(tmp_path, capsys, monkeypatch):
    from vgrpo.trainer import presets

    monkeypatch.delitem(presets.PRESETS, FLOWGRPO.preset)
    assert compare.main(["--out", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no preset 'shapes-cpu-flowgrpo'" in err and "--only ablations" in err
    assert compare.main(["--out", str(tmp_path), "--dry-run", "--only", "ablations"]) == 0


def test_cli_refuses_a_folder_made_with_another_config(tmp_path, capsys):
    plan = build_plan(tmp_path, only="ablations", budget=Budget(iterations=2, eval_every=1), variants=("vgrpo",))
    fake_run(plan.runs()[0], [0.1, 0.2, 0.3], every=1)
    assert compare.main(["--out", str(tmp_path), "--only", "ablations", "--variants", "vgrpo", "--iterations", "3",
                         "--eval-every", "1", "--dry-run"]) == 2
    assert "job.iterations: folder has 2, plan wants 3" in capsys.readouterr().err


def test_report_only_without_finished_runs_fails(tmp_path, capsys):
    assert compare.main(["--out", str(tmp_path), "--report-only"]) == 1
    assert "no finished run" in capsys.readouterr().err


def test_build_plan_rejects_unknown_group(tmp_path):
    with pytest.raises(PlanError, match="--only must be"):
        build_plan(tmp_path, only="everything")


def test_subprocess_launcher_reports_a_failed_run_with_its_log(tmp_path):
    plan = build_plan(tmp_path, only="ablations", variants=("vgrpo",), extra_overrides=("rollout.group_size=1",))
    spec = plan.runs()[0]
    failure = launch_subprocess(spec, 1, tmp_path / "logs" / "run.log")
    assert "exit status 2" in failure and "rollout.group_size must be >= 2" in failure
    assert (tmp_path / "logs" / "run.log").read_text().startswith("$ ")


# ----------------------------------------------------------------------------- end to end

# The verifier scores a random-weight model 0 everywhere (zero variance: no update), so the tiny runs
# train on a dense reward that varies between images.
TINY = ["--iterations", "2", "--eval-every", "2", "--prompts", "2", "--group-size", "2", "--eval-images", "1",
        "--set", "model.init=random", "rollout.steps=2", "algorithm.num_pairs=2", "algorithm.minibatches=1",
        "eval.grid_images=0", "checkpoint.every=-1", "reward.names=jpeg_compressibility"]


def test_end_to_end_two_tiny_vgrpo_runs(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--variants", "vgrpo", "no-sharing", "--seeds", "0", "--threads", "1",
            "--launcher", "inprocess", *TINY]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "[2/2] no-sharing-seed0: done" in out
    for name in ("results.json", "results.csv", "summary.md", "score_vs_iterations.png", "score_vs_nfe.png",
                 "score_vs_wallclock.png", "ablations.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [(r["run"], r["iteration"]) for r in rows] == [
        ("vgrpo-seed0", "0"), ("vgrpo-seed0", "2"), ("no-sharing-seed0", "0"), ("no-sharing-seed0", "2"),
    ]
    # per iteration: rollout 2 steps + scoring 2 pairs of the base model for the KL (kl_target=reference;
    # the one minibatch reuses its own surrogate) + update 2 pairs
    assert [float(r["cumulative_nfe_per_image"]) for r in rows[:2]] == [0.0, 12.0]
    assert float(rows[1]["cumulative_train_seconds"]) > float(rows[0]["cumulative_train_seconds"]) == 0.0
    assert float(rows[3]["surrogate_cv_mean"]) > 0.0
    # a second invocation finds both runs finished and only reports
    assert compare.main(argv) == 0
    assert "no-sharing-seed0: finished earlier, skipped" in capsys.readouterr().out


def test_variance_ablation_shared_stratified_pairs_cut_the_estimator_noise():
    import torch

    from vgrpo.experiments.variance import main as variance_main
    from vgrpo.experiments.variance import summarize, surrogate_draws

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(17, 32), torch.nn.SiLU(), torch.nn.Linear(32, 16))

    def velocity(z, t):
        return net(torch.cat([z, t[:, None]], dim=1))

    x0 = torch.randn(4, 1, 16).add(0.5 * torch.randn(4, 4, 16)).reshape(16, 16)  # 4 groups of 4 similar samples
    rows = {
        key: summarize(surrogate_draws(velocity, x0, 4, 4, 8, sharing, stratified), 4)
        for key, sharing, stratified in (("independent", "none", False), ("vgrpo", "batch", True))
    }
    assert set(rows["vgrpo"]) == {"cv", "cv_within_group", "centred_noise_to_signal"}
    assert rows["vgrpo"]["centred_noise_to_signal"] * 2 < rows["independent"]["centred_noise_to_signal"]
    with pytest.raises(SystemExit):  # argument errors before any model is loaded
        variance_main(["--draws", "1"])
