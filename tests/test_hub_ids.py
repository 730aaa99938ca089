"""Hub ids for model.path and reward paths (vgrpo.utils.hub): offline an id resolves to its snapshot
in the local HF cache or fails at validation saying how to get it; a missing local path keeps its
"does not exist" message; online the id goes to snapshot_download. No test touches the network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vgrpo
from vgrpo.trainer.config import Config, ConfigError, validate
from vgrpo.utils import hub
from vgrpo.utils.offline import OFFLINE_ENVIRONMENT

ID = "some-org/Some.Model_1"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty HF cache under a temporary HF_HOME, offline, with the downloader poisoned."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("the network was asked")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    return tmp_path / "hf" / "hub"


def cache_snapshot(cache: Path, repo_id: str, commit: str = "0123abcd" * 5) -> Path:
    """The cache layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True)
    return folder


def problems(**sections) -> str:
    cfg = Config.from_dict(sections)
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    return str(exc.value)


def test_what_is_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for text in (ID, "black-forest-labs/FLUX.1-dev", "stabilityai/stable-diffusion-3.5-medium"):
        assert hub.is_hub_id(text), text
    for text in ("./foo", "/abs/foo", "foo", "a/b/c", "~/x", "http://host/v1", "a/../b", "org/name.",
                 "none", "", None, "-org/name", "org/na me"):
        assert not hub.is_hub_id(text), text
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not hub.is_hub_id("org/name")  # an existing local folder is a path


def test_an_uncached_id_offline_fails_at_validation_saying_how_to_get_it(offline_cache):
    text = problems(model={"name": "flux", "path": ID}, reward={"names": ["pickscore"], "paths": [ID]})
    for what in ("model.path", "reward.paths[0]"):
        assert re.search(rf"{re.escape(what)} '{re.escape(ID)}' is not a local folder, and as a Hugging Face hub id "
                         r"it is not in the local cache", text), text
    assert f"huggingface-cli download {ID}" in text and "HF_HUB_OFFLINE=0" in text
    assert "does not exist" not in text


def test_a_missing_local_path_keeps_its_message(offline_cache):
    for path in ("./foo", "/abs/missing/dir", "org/na me"):
        text = problems(model={"name": "flux", "path": path})
        assert f"model.path {path!r} does not exist" in text and "hub" not in text


def test_a_cached_id_resolves_offline_to_its_snapshot(offline_cache):
    from vgrpo.models.shapes import ShapesAdapter

    folder = cache_snapshot(offline_cache, ID)
    ShapesAdapter.random(seed=1, num_layers=1).save_pretrained(folder)
    assert hub.resolve(ID, "model.path") == str(folder)
    cfg = Config.from_dict({"model": {"path": ID}, "job": {"output_dir": str(offline_cache.parent / "runs")}})
    validate(cfg)  # no problem: the id is in the cache
    loaded = ShapesAdapter.from_pretrained(ID)
    assert len(loaded.denoiser.transformer_blocks) == 1


def test_a_cached_diffusers_id_passes_the_directory_check(offline_cache):
    """A FLUX directory in the cache as huggingface_hub lays it out (every file a link to a blob)."""
    import os
    import shutil

    from tests.fixtures_tiny_models import tiny_flux_dir
    from vgrpo.models.local_dir import validate_model_dir

    folder = cache_snapshot(offline_cache, "black-forest-labs/FLUX.1-dev")
    shutil.copytree(tiny_flux_dir(), folder, dirs_exist_ok=True,
                    copy_function=lambda src, dst: os.symlink(os.path.abspath(src), dst))
    assert validate_model_dir("black-forest-labs/FLUX.1-dev", "flux") == folder.resolve()


def test_an_uncached_id_offline_is_named_by_the_loaders_too(offline_cache):
    from vgrpo.models.local_dir import ModelDirError, validate_model_dir
    from vgrpo.rewards.registry import build_reward

    with pytest.raises(ModelDirError, match=f"huggingface-cli download {ID}"):
        validate_model_dir(ID, "flux")
    with pytest.raises(hub.HubIdError, match="HF_HUB_OFFLINE=0"):
        build_reward("pickscore", ID)
    with pytest.raises(ModelDirError, match="does not exist"):
        validate_model_dir("./not-here", "flux")


def test_online_an_id_is_downloaded_with_the_loader_files_only(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert hub.problem(ID, "model.path") is None and calls == []  # validation downloads nothing
    assert hub.resolve(ID, "model.path", hub.DIFFUSERS_FILES) == str(tmp_path / "snapshot")
    assert calls == [(ID, {"cache_dir": str(tmp_path / "cache"), "allow_patterns": list(hub.DIFFUSERS_FILES)})]
    assert hub.resolve("./local", "x") == "./local" and len(calls) == 1  # a path is never looked up


def test_print_config_does_not_check_paths(offline_cache, capsys):
    from vgrpo import train

    assert train.main(["--print-config", "--preset=flux-dev", f"--model.path={ID}"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["path"] == ID
    assert train.main(["--preset=flux-dev", f"--model.path={ID}"]) == 2
    assert f"huggingface-cli download {ID}" in capsys.readouterr().err
    from vgrpo import evaluate

    with pytest.raises(SystemExit) as exc:  # its own options are checked as they are parsed
        evaluate.main([f"--model.path={ID}", "--rewards", "pickscore", "--reward-paths", ID])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--reward_paths[0] {ID!r} is not a local folder" in err
    assert evaluate.main([f"--model.path={ID}"]) == 2
    assert f"model.path {ID!r} is not a local folder" in capsys.readouterr().err


def test_entry_points_default_to_offline_without_overriding_the_user():
    """HF_HUB_OFFLINE=0 set by the user must survive: every entry point calls the one helper (which
    uses setdefault, tests/test_offline_environment.py) and never assigns the variable itself."""
    root = Path(vgrpo.__file__).parent
    entry_points = ("train", "evaluate", "export", "pretrain", "sample_grid",
                    "experiments/compare", "experiments/headroom", "experiments/reward_stability")
    assert OFFLINE_ENVIRONMENT["HF_HUB_OFFLINE"] == "1"
    for path in [root / f"{m}.py" for m in entry_points]:
        text = path.read_text()
        assert "use_offline_environment()" in text, path
        assert not re.search(r'os\.environ\["HF_HUB_OFFLINE"\]\s*=', text), path
