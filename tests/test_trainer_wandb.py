"""Weights & Biases logging in offline mode: the run's file holds the config, every train and eval
metric of metrics.jsonl, and the sample grids."""

from __future__ import annotations

import json
import struct

import pytest

from tests.trainer_setups import color_rewards, tiny_adapter, tiny_config
from vgrpo.trainer.metrics import read_metrics

pytest.importorskip("wandb")


def wandb_records(path):
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log of 32 KiB blocks,
    each record chunk headed by crc32 (4 bytes), length (2), type (1: full, 2: first, 3: middle, 4: last))."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, out, parts = 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
    return out


def finished_records(path, timeout_s: float = 20.0):
    """`wandb_records` of a run file once it holds the run's exit record (the service may still be
    writing it for a moment after `finish()` returned)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        records = wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def history_rows(records) -> list[dict]:
    """The logged rows ({key: value}) of the history records."""
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def test_offline_wandb_run_logs_config_metrics_and_grids(tmp_path, monkeypatch):
    from vgrpo.trainer.trainer import Trainer

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-files"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb-files").mkdir()
    prompts = tmp_path / "eval.txt"
    prompts.write_text("a red circle\na blue square\n")
    cfg = tiny_config(tmp_path / "runs", eval=dict(every=1, prompt_file=str(prompts), grid_images=2),
                      logging=dict(wandb=True, wandb_project="vgrpo-test"))
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    trainer.train()

    runs = list((tmp_path / "wandb-files" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = (trainer.run_dir / "wandb-run-id").read_text().strip()
    files = list(runs[0].glob(f"run-{run_id}.wandb"))
    assert files and len(list(runs[0].glob("files/media/images/eval/samples_*.png"))) == 3
    records = finished_records(files[0])

    (start,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (start.project, start.display_name, start.run_id) == ("vgrpo-test", "run", run_id)
    config = {item.key: json.loads(item.value_json) for item in start.config.update}
    assert config["eval"]["prompt_file"] == str(prompts) and config["rollout"]["group_size"] == 4

    history = history_rows(records)
    logged = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert [r["kind"] for r in logged] == ["eval", "train", "eval", "train", "eval"]
    for record in logged:  # every metric of metrics.jsonl, under <kind>/<name>, against its iteration
        prefix = record["kind"] + "/"
        (row,) = [h for h in history if h["iteration"] == record["iteration"] and any(
            k.startswith(prefix) and not k.startswith("eval/samples") for k in h)]
        for key, value in record.items():
            if key not in ("iteration", "kind"):
                assert row[prefix + key] == pytest.approx(value, rel=1e-12), key
    grids = [h for h in history if h.get("eval/samples/_type") == "image-file"]
    assert [h["iteration"] for h in grids] == [0, 1, 2]


def test_a_resumed_run_continues_the_same_wandb_run(tmp_path, monkeypatch):
    from vgrpo.trainer.trainer import Trainer

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(tmp_path / "runs", job=dict(iterations=1), checkpoint=dict(every=1), logging=dict(wandb=True))
    Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards).train()
    cfg.job.iterations = 2
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    trainer.train()
    assert trainer.iteration == 2
    run_id = (trainer.run_dir / "wandb-run-id").read_text().strip()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(f"-{run_id}" in r.name for r in runs)  # ("-1" added within one second)
    rows = history_rows(finished_records(runs[1] / f"run-{run_id}.wandb"))
    assert [row["iteration"] for row in rows] == [1] and "train/reward_mean" in rows[0]  # the resumed part logs only the iteration it ran
