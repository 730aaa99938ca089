"""`use_offline_environment`: every command runs without the hub and keeps what the user set."""

import os

from vgrpo.utils.offline import OFFLINE_ENVIRONMENT, use_offline_environment


def test_unset_variables_are_set_and_set_ones_are_kept(monkeypatch):
    for name in OFFLINE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    use_offline_environment()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TORCHAO_FORCE_SKIP_LOADING_SO_FILES"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"  # the user's choice wins
