"""Model directory validation and the memory estimate: clear errors before any expensive work."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from tests.fixtures_tiny_models import tiny_flux_dir, tiny_sd3_dir
from vgrpo.models.local_dir import ModelDirError, expected_layout, validate_model_dir
from vgrpo.models.memory import (
    InsufficientMemoryError,
    check_fits,
    component_numel,
    estimate_need,
    safetensors_numel,
)
from vgrpo.models.registry import build_adapter


@pytest.fixture(scope="module")
def flux_dir():
    return tiny_flux_dir()


@pytest.fixture()
def flux_copy(flux_dir, tmp_path):
    return shutil.copytree(flux_dir, tmp_path / "FLUX.1-dev")


def test_tiny_flux_dir_is_valid(flux_dir):
    assert validate_model_dir(flux_dir, "flux") == flux_dir.resolve()


def test_tiny_sd3_dir_is_valid_and_wrong_family_is_named():
    root = tiny_sd3_dir()
    assert validate_model_dir(root, "sd3") == root.resolve()
    with pytest.raises(ModelDirError, match="StableDiffusion3Pipeline.*expects FluxPipeline"):
        validate_model_dir(root, "flux")


def test_missing_directory_names_path_and_expected_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelDirError) as e:
        build_adapter("flux", str(missing), device="cpu")
    msg = str(e.value)
    assert str(missing) in msg and "does not exist" in msg
    assert "transformer/config.json" in msg and "text_encoder_2/config.json" in msg and "tokenizer_2/" in msg
    with pytest.raises(ModelDirError, match="needs model.path"):
        build_adapter("sd3", None, device="cpu")


def test_missing_component_and_bad_json_are_reported(flux_copy):
    shutil.rmtree(flux_copy / "text_encoder_2")
    (flux_copy / "vae" / "config.json").unlink()
    with pytest.raises(ModelDirError) as e:
        validate_model_dir(flux_copy, "flux")
    msg = str(e.value)
    assert str(flux_copy) in msg
    assert "missing folder text_encoder_2/" in msg and "missing vae/config.json" in msg
    assert "expected files" in msg
    (flux_copy / "model_index.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="model_index.json is not valid JSON"):
        validate_model_dir(flux_copy, "flux")


def test_missing_shard_of_an_index_is_named(flux_copy):
    folder = flux_copy / "transformer"
    shard = "diffusion_pytorch_model-00001-of-00002.safetensors"
    (folder / "diffusion_pytorch_model.safetensors").rename(folder / shard)
    index = {"metadata": {}, "weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelDirError, match="00002-of-00002.safetensors"):
        validate_model_dir(flux_copy, "flux")


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind 'sdxl'"):
        build_adapter("sdxl", None)
    assert "scheduler/scheduler_config.json" in expected_layout("sd3")


def test_safetensors_header_count(tmp_path):
    save_file({"a": torch.zeros(3, 5), "b": torch.zeros(7, dtype=torch.bfloat16)}, str(tmp_path / "w.safetensors"))
    assert safetensors_numel(tmp_path / "w.safetensors") == 22
    (tmp_path / "bad.safetensors").write_bytes(b"\x05")
    with pytest.raises(ModelDirError, match="bad.safetensors is not a safetensors file"):
        safetensors_numel(tmp_path / "bad.safetensors")


def test_memory_estimate_from_headers(flux_dir):
    from diffusers import FluxTransformer2DModel

    n = sum(p.numel() for p in FluxTransformer2DModel.from_pretrained(str(flux_dir / "transformer")).parameters())
    assert component_numel(flux_dir / "transformer") == n
    lora = estimate_need(flux_dir, dtype=torch.bfloat16, finetune="lora")
    assert lora.items["transformer weights"] == 2 * n
    full = estimate_need(flux_dir, dtype=torch.bfloat16, finetune="full", shards=2, offload=False)
    assert full.items["gradients"] == n and full.items["optimizer state"] == 4 * n
    assert full.items["text encoders + VAE"] > max(v for k, v in lora.items.items() if k.startswith("largest"))


def test_too_large_fails_with_the_numbers(flux_dir):
    need = estimate_need(flux_dir, dtype=torch.float32, finetune="full")
    check_fits(need, "cpu", budget_bytes=need.total)  # exactly enough: fine
    with pytest.raises(InsufficientMemoryError) as e:
        check_fits(need, "cuda:0", budget_bytes=need.total // 2, what="FLUX model")
    msg = str(e.value)
    assert "FLUX model needs at least" in msg and "optimizer state" in msg and "GiB is free" in msg
    check_fits(need, "cpu")  # host memory is not checked


def test_registry_delegates_shapes_and_drops_unset_options():
    from vgrpo.models.shapes import ShapesAdapter

    adapter = build_adapter("shapes", None, device="cpu", dtype=torch.float32, resolution=None)
    assert isinstance(adapter, ShapesAdapter)
    with pytest.raises(ValueError, match="takes no options, got \\['resolution'\\]"):
        build_adapter("shapes", None, resolution=64)


def _index_with(folder, weight_map) -> None:
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize("shard", ["../../x.safetensors", "/etc/x.safetensors", "sub/x.safetensors",
                                   "..\\x.safetensors", "model.bin", 3, None])
def test_index_shard_outside_the_folder_or_not_a_name_is_refused(flux_copy, shard):
    folder = flux_copy / "transformer"
    (flux_copy.parent / "x.safetensors").write_bytes((flux_copy / "vae" / "diffusion_pytorch_model.safetensors").read_bytes())
    _index_with(folder, {"a": "diffusion_pytorch_model.safetensors", "b": shard})
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    with pytest.raises(ModelDirError, match="weight_map names shard") as e:
        validate_model_dir(flux_copy, "flux")
    assert str(index) in str(e.value)
    with pytest.raises(ModelDirError, match="no path components"):
        estimate_need(flux_copy)  # the memory estimate reads the same index: refused the same way


@pytest.mark.parametrize("content", [
    "[1, 2]",  # not an object
    '{"weight_map": ["a.safetensors"]}',  # weight_map not an object
    '{"weight_map": {}}',  # empty
    '{"weight_map": {"a": ["x"]}}',  # unhashable shard name
    "[" * 100_000 + "]" * 100_000,  # nesting deep enough to overflow the parser
    "\xff\xfe binary",
])
def test_malformed_index_json_names_the_file(flux_copy, content):
    index = flux_copy / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    index.write_bytes(content.encode("latin-1"))
    with pytest.raises(ModelDirError) as e:
        validate_model_dir(flux_copy, "flux")
    assert str(index) in str(e.value)


def _safetensors_with_header(path, header_bytes: bytes) -> None:
    path.write_bytes(len(header_bytes).to_bytes(8, "little") + header_bytes)


@pytest.mark.parametrize("header", [
    b"[1, 2, 3]",  # a list, not an object (was AttributeError)
    b'{"w": {"dtype": "F32"}}',  # no shape (was KeyError)
    b'{"w": {"dtype": "F32", "shape": [-1, 3]}}',  # negative dimension
    b'{"w": {"dtype": "F32", "shape": "3"}}',  # shape not a list
    b'{"w": 5}',  # entry not an object
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting (was RecursionError)
    b"",  # empty header
    b"\xff\xfe",  # not UTF-8
])
def test_malformed_safetensors_header_names_the_file(flux_copy, header):
    shard = flux_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    _safetensors_with_header(shard, header)
    with pytest.raises(ModelDirError) as e:
        validate_model_dir(flux_copy, "flux")
    assert str(shard) in str(e.value) and "safetensors" in str(e.value)
    with pytest.raises(ModelDirError):
        safetensors_numel(shard)


def test_header_length_beyond_the_limit_and_unreadable_config(flux_copy):
    shard = flux_copy / "vae" / "diffusion_pytorch_model.safetensors"
    good = shard.read_bytes()
    shard.write_bytes((2**62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ModelDirError, match="not a safetensors file \\(header length"):
        validate_model_dir(flux_copy, "flux")
    shard.write_bytes(good)
    (flux_copy / "scheduler" / "scheduler_config.json").unlink()
    (flux_copy / "scheduler" / "scheduler_config.json").mkdir()  # a folder where a file belongs
    with pytest.raises(ModelDirError, match="scheduler_config.json"):
        validate_model_dir(flux_copy, "flux")


def test_shapes_model_folder_with_malformed_config_names_it(tmp_path):
    from vgrpo.models.shapes import ShapesAdapter

    (tmp_path / "config.json").write_text("[" * 100_000)
    with pytest.raises(ModelDirError, match="config.json is not valid JSON"):
        ShapesAdapter.from_pretrained(tmp_path)
