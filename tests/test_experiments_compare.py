"""`python -m vgrpo.experiments.compare`: the shipped plan resolves to valid trainer configs, plans are
checked before anything trains, --dry-run prints the commands, the report's numbers on hand-made
run folders, and one tiny end-to-end run of the subprocess runner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from vgrpo.experiments import compare
from vgrpo.experiments.plan import SHIPPED_PLAN, PlanError, Training, load_plan, resolve, select
from vgrpo.experiments.report import ReportError, first_reach, read_curve
from vgrpo.experiments.runner import run_one


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the plan


def test_shipped_plan_resolves_every_run_to_a_valid_trainer_config():
    plan = load_plan()
    assert plan.seeds == (0, 1, 2) and plan.metric == "score/overall"
    runs = {g: [r.name for r in plan.runs if r.group == g] for g in dict.fromkeys(r.group for r in plan.runs)}
    assert len(runs["flowgrpo"]) >= 3  # the fair search
    assert runs["sharing"] == ["none", "group", "batch"] and runs["stratified"] == ["on", "off"]
    assert runs["weighting"] == ["adaptive", "x", "v", "eps"] and runs["num_pairs"] == ["2", "4", "8"]
    assert {"clip", "kl", "soft-clip"} <= set(runs["control"])
    assert (plan.candidate, plan.reference) == ("vgrpo/default", "flowgrpo")
    trainings = resolve(plan)  # parse + validate every (run, seed); raises on any bad key or value
    by_name = {t.name: t for t in trainings}
    # the V-GRPO default appears in five ablation groups and trains once per seed
    assert set(by_name["vgrpo-default-seed1"].serves) == {
        (k, 1) for k in ("vgrpo/default", "sharing/batch", "stratified/on", "weighting/adaptive", "num_pairs/4",
                         "control/clip")}
    assert len(trainings) == 3 * (len(plan.runs) - 5)
    flow = by_name["flowgrpo-noise-1-seed2"].config
    assert flow["algorithm"]["name"] == "flowgrpo" and flow["algorithm"]["sde_noise_level"] == 1.0
    assert flow["job"]["seed"] == 2 and flow["job"]["iterations"] == 50 and flow["rollout"]["group_size"] == 8
    kl = by_name["control-kl-seed0"].config["algorithm"]
    assert (kl["clip_range"], kl["kl_target"], kl["beta"]) == (0.0, "behaviour", 0.3)


def test_selection_seeds_iterations_and_extra_overrides_apply_last():
    plan = select(load_plan(), only=["flowgrpo/lr-2e-4", "sharing"], seeds=[4], iterations=3,
                  extra=["rollout.steps=6"], out="elsewhere")
    trainings = resolve(plan)
    # sharing/batch is the V-GRPO default: its training keeps the name a run of the whole plan gives it
    assert [t.name for t in trainings] == ["flowgrpo-lr-2e-4-seed4", "sharing-none-seed4", "sharing-group-seed4",
                                           "vgrpo-default-seed4"]
    assert trainings[-1].serves == [("sharing/batch", 4)] and trainings[-1].config["job"]["name"] == "vgrpo-default-seed4"
    assert "--job.name=vgrpo-default-seed4" in trainings[-1].argv
    for t in trainings:
        assert (t.config["job"]["iterations"], t.config["rollout"]["steps"], t.config["job"]["output_dir"]) == (
            3, 6, "elsewhere")
    assert trainings[0].config["optim"]["lr"] == 2e-4


@pytest.mark.parametrize("text, message", [
    ('[groups.a]\nruns.x = { algorithm.no_such_key = 1 }', "a/x: unknown config key algorithm.no_such_key"),
    ('[groups.a]\nruns.x = { eval.every = -1 }', "a/x: eval.every must be >= 0"),
    ('[groups.a-b]\nruns.c = {}\n[groups.a]\nruns.b-c = { optim.lr = 1e-4 }', "folder name a-b-c-seed0 is another"),
    ('[groups.a]\nruns.x = { algorithm.num_pairs = 0 }', "algorithm.num_pairs (N_MC) must be >= 1"),
    ('[groups.a]\nruns.x = { algorithm.stratified = "maybe" }', "cannot parse 'maybe' as bool"),
    ('[groups.a]\nruns.x = { job.seed = 3 }', "job.seed is set by the plan"),
    ('[groups.a]\npreset = "nope"\nruns.x = {}', "unknown preset 'nope'"),
    ('[groups.a]\nruns = {}', "no runs"),
    ('seeds = [1, 1]\n[groups.a]\nruns.x = {}', "seeds must be distinct"),
    ('[compare]\ncandidate = "b/x"\n[groups.a]\nruns.x = {}', "candidate 'b/x' is not a GROUP/RUN"),
    ('budgets = 3\n[groups.a]\nruns.x = {}', "unknown top-level keys ['budgets']"),
    ('[groups.a\n', "not valid TOML"),
])
def test_a_bad_plan_exits_2_naming_the_run_and_the_problem(tmp_path, capsys, text, message):
    plan = write(tmp_path / "plan.toml", text)
    assert compare.main(["--plan", str(plan), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "--only nope: not a group"),
    (["--seeds", "1", "1"], "--seeds must be distinct"),
    (["--iterations", "0"], "--iterations must be >= 1"),
    (["--set", "rollout.steps"], "must look like section.key=value"),
    (["--set", "job.name=x"], "job.name is set by the plan"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    assert compare.main(["--out", str(tmp_path), "--dry-run", *argv]) == 2
    assert message in capsys.readouterr().err


def test_dry_run_prints_every_training_and_its_command_and_writes_nothing(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "out"), "--only", "vgrpo", "control", "--seeds", "0", "--dry-run"]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "5 runs x 1 seeds = 4 trainings" in out
    assert "vgrpo-default-seed0: to train (also control/clip)" in out
    line = next(x for x in out.splitlines() if "--job.name=control-kl-seed0" in x)
    assert " -m vgrpo.train --preset shapes-cpu --job.iterations=50 " in line
    assert "--algorithm.clip_range=0.0 --algorithm.kl_target=behaviour --algorithm.beta=0.3 --job.seed=0" in line
    assert not (tmp_path / "out").exists()


def test_a_selection_reuses_the_trainings_of_a_whole_plan_run(tmp_path, capsys):
    """`--only sharing` after a whole run must not train the V-GRPO default again as sharing-batch."""
    argv = ["--out", str(tmp_path / "out"), "--only", "sharing", "--seeds", "0", "--dry-run"]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "vgrpo-default-seed0: to train (also sharing/batch)" in out and "sharing-batch-seed0" not in out


# ----------------------------------------------------------------------------- the report

PLAN = """
title = "tiny"
seeds = [0, 1]
[compare]
candidate = "a/x"
reference = "ref"
[budget]
job.iterations = 4
eval.every = 2
[groups.a]
runs.x = {}
[groups.ref]
runs.p = { optim.lr = 1e-4 }
runs.q = { optim.lr = 2e-4 }
"""


def fake_run(folder: Path, scores: list[float], nfe=(8.0, 3.0, 4.0), seconds=(1.0, 0.5, 2.5)) -> None:
    """A finished run folder with evaluations at iterations 0, 2, 4 scoring `scores`."""
    records = []
    for i in range(5):
        if i % 2 == 0:
            records.append({"iteration": i, "kind": "eval", "score/overall": scores[i // 2], "time_eval_s": 99.0})
        if i < 4:
            records.append({"iteration": i, "kind": "train", "nfe_rollout": nfe[0], "nfe_old": nfe[1],
                            "nfe_update": nfe[2], "time_rollout_s": seconds[0], "time_reward_s": seconds[1],
                            "time_update_s": seconds[2]})
    write(folder / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    write(folder / "summary.json", "{}")


def test_report_of_hand_made_runs_gives_the_expected_numbers(tmp_path, capsys):
    plan = write(tmp_path / "plan.toml", PLAN)
    out = tmp_path / "out"
    fake_run(out / "a-x-seed0", [0.10, 0.30, 0.50])  # 15 NFE and 4 s per iteration
    fake_run(out / "a-x-seed1", [0.10, 0.20, 0.40])
    flow = {"nfe": (10.0, 0.0, 10.0), "seconds": (2.0, 0.5, 5.5)}  # 20 NFE and 8 s per iteration
    fake_run(out / "ref-p-seed0", [0.20, 0.25, 0.30], **flow)
    fake_run(out / "ref-p-seed1", [0.20, 0.25, 0.30], **flow)
    fake_run(out / "ref-q-seed0", [0.20, 0.22, 0.26], **flow)  # q is not finished for seed 1
    assert compare.main(["--plan", str(plan), "--out", str(out), "--report-only"]) == 0
    report = (out / "report.md").read_text()
    assert "| a | **x** | - | 0, 1 | 0.100 ± 0.000 | 0.450 ± 0.071 | 0.450 ± 0.071 | 60 | 16 |" in report
    assert "| ref | **p** | `optim.lr=0.0001` | 0, 1 | 0.200 ± 0.000 | 0.300 ± 0.000 | 0.300 ± 0.000 | 80 | 32 |" \
        in report
    assert "| ref | q | `optim.lr=0.0002` | 0 | 0.200 | 0.260 | 0.260 | 80 | 32 |" in report
    assert "## Cost for a/x to reach ref/p's final score" in report and "32 s of training, 80 NFE" in report
    # the mean curve 0.10, 0.25, 0.45 reaches 0.30 a quarter of the way from iteration 2 to 4
    assert "| score | 0.300 | 2.5 | 10 | 31% | 38 | 47% |" in report
    # gains 0, 0.15, 0.35 reach ref/p's gain 0.10 two thirds of the way to iteration 2
    assert "| gain | 0.100 | 1.3 | 5 | 17% | 20 | 25% |" in report
    assert "ref/q seed 1" in report
    data = json.loads((out / "results.json").read_text())
    assert data["reach"][0]["nfe"] == pytest.approx(37.5) and data["reach"][0]["seconds"] == pytest.approx(10.0)
    assert [r["best_of_group"] for r in data["runs"]] == [True, True, False]
    assert (out / "score.png").stat().st_size > 0
    assert "| score | 0.300 | 2.5 |" in capsys.readouterr().out


def test_best_differs_from_final_and_an_unreached_target_is_said(tmp_path):
    plan = write(tmp_path / "plan.toml", PLAN)
    out = tmp_path / "out"
    for seed, scores in ((0, [0.1, 0.2, 0.15]), (1, [0.1, 0.3, 0.25])):
        fake_run(out / f"a-x-seed{seed}", scores)
        fake_run(out / f"ref-p-seed{seed}", [0.2, 0.3, 0.4])
    assert compare.main(["--plan", str(plan), "--out", str(out), "--report-only"]) == 0
    report = (out / "report.md").read_text()
    assert "| a | **x** | - | 0, 1 | 0.100 ± 0.000 | 0.200 ± 0.071 | 0.250 ± 0.071 |" in report
    assert "| score | 0.400 | not reached |" in report and "| gain | 0.200 | not reached |" in report


def test_metrics_without_nfe_are_an_error_naming_file_and_key(tmp_path, capsys):
    plan = write(tmp_path / "plan.toml", PLAN)
    out = tmp_path / "out"
    fake_run(out / "a-x-seed0", [0.1, 0.2, 0.3])
    path = out / "a-x-seed0" / "metrics.jsonl"
    path.write_text(path.read_text().replace('"nfe_old"', '"nfe_other"'))
    assert compare.main(["--plan", str(plan), "--out", str(out), "--report-only"]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "iteration 0 has no 'nfe_old'" in err
    with pytest.raises(ReportError, match="no evaluation"):
        read_curve(write(tmp_path / "m.jsonl", ""), "score/overall")
    with pytest.raises(ReportError, match="iteration 0 has no 'score/overall'"):
        read_curve(write(tmp_path / "m.jsonl", '{"iteration": 0, "kind": "eval", "reward": 1}\n'), "score/overall")


def test_report_only_without_finished_runs_fails(tmp_path, capsys):
    assert compare.main(["--out", str(tmp_path), "--only", "vgrpo", "--report-only"]) == 1
    assert "no finished run" in capsys.readouterr().err


def test_first_reach_interpolates_linearly():
    xs, ys = [0.0, 10.0, 20.0, 30.0], [0.10, 0.20, 0.40, 0.35]
    assert first_reach(xs, ys, 0.30) == pytest.approx(15.0)
    assert first_reach(xs, ys, 0.40) == pytest.approx(20.0)
    assert first_reach(xs, ys, 0.05) == 0.0
    assert first_reach(xs, ys, 0.41) is None


# ----------------------------------------------------------------------------- the runner


def test_a_folder_made_with_another_config_is_refused(tmp_path, capsys):
    plan = write(tmp_path / "plan.toml", PLAN)
    out = tmp_path / "out"
    training = resolve(load_plan(plan))[0]
    write(out / training.name / "config.json", json.dumps(training.config))
    assert compare.main(["--plan", str(plan), "--out", str(out), "--dry-run"]) == 0  # same config: fine
    assert compare.main(["--plan", str(plan), "--out", str(out), "--iterations", "3", "--dry-run"]) == 2
    assert "job.iterations: folder has 4, plan wants 3" in capsys.readouterr().err


def test_a_failed_training_is_reported_with_its_log(tmp_path):
    failure = run_one(Training("bad", ["--no-such-option", "1"], {}), tmp_path / "logs" / "bad.log")
    assert "exit status 2" in failure and "unknown option --no_such_option" in failure
    assert (tmp_path / "logs" / "bad.log").read_text().startswith("$ ")


# The verifier scores a random-weight model 0 everywhere (zero variance: no update), so the tiny run
# trains on a dense reward that varies between images.
TINY = """
seeds = [0]
[budget]
job.iterations = 2
eval.every = 2
eval.images_per_category = 1
eval.grid_images = 0
checkpoint.every = -1
model.init = "random"
rollout = { prompts_per_iteration = 2, group_size = 2, steps = 2 }
algorithm = { num_pairs = 2, minibatches = 1 }
reward.names = ["jpeg_compressibility"]
[groups.tiny]
runs.a = {}
"""


def test_end_to_end_tiny_run_in_a_subprocess_then_resume_skips_it(tmp_path, capsys):
    plan = write(tmp_path / "plan.toml", TINY)
    out = tmp_path / "out"
    start = time.perf_counter()
    assert compare.main(["--plan", str(plan), "--out", str(out)]) == 0, capsys.readouterr()
    text = capsys.readouterr().out
    assert "[1/1] tiny-a-seed0: done" in text and "| tiny | **a** | - | 0 |" in text
    curve = read_curve(out / "tiny-a-seed0" / "metrics.jsonl", "score/overall")
    # per iteration: rollout 2 steps + 2 pairs of the base model for its KL (the one minibatch reuses
    # its own surrogate) + update 2 pairs
    assert curve.iterations == [0, 2] and curve.nfe == [0.0, 12.0] and curve.seconds[1] > 0
    assert (out / "logs" / "tiny-a-seed0.log").is_file()
    assert compare.main(["--plan", str(plan), "--out", str(out)]) == 0
    assert "tiny-a-seed0: finished earlier, skipped" in capsys.readouterr().out
    print(f"end-to-end: {time.perf_counter() - start:.0f} s")


def test_set_keeps_a_list_value_whole_and_the_two_modes_exclude_each_other(tmp_path, capsys):
    assert compare.overrides(["finetune.lora_targets=to_q", "to_k", "optim.lr=2e-4"]) == [
        "finetune.lora_targets=to_q,to_k", "optim.lr=2e-4"]
    argv = ["--out", str(tmp_path), "--only", "vgrpo", "--seeds", "0", "--dry-run",
            "--set", "finetune.lora_targets=to_q,to_k", "optim.lr=2e-4"]
    assert compare.main(argv) == 0
    assert "--finetune.lora_targets=to_q,to_k --optim.lr=2e-4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--out", str(tmp_path), "--dry-run", "--report-only"])
    assert exit_.value.code == 2 and "exclude each other" in capsys.readouterr().err
