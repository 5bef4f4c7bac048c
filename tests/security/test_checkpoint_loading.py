"""A checkpoint from someone else never runs code: every torch file is loaded with `weights_only=True`.

The payload below makes a directory when it is unpickled (harmless, and visible to the test). Before issue 31,
`load_state_dict_file` retried `torch.load` without `weights_only` whenever the safe load raised TypeError (what a
torch without the option raises for the keyword), and `adapters/congealing_run.py` loaded `system.canonical_run`'s
checkpoint with `weights_only=False`: both ran the payload.
"""
import importlib.util
import os
import pathlib
import sys
import types
from pathlib import Path

import pytest
import torch

from congeal.common.errors import InputError
from congeal.models.mvdream import load_state_dict_file
from congeal.weights import torch_files
from congeal.weights.torch_files import load_torch_file

ADAPTER = Path(__file__).resolve().parents[2] / "custom" / "threestudio-congeal" / "adapters" / "congealing_run.py"


class _Payload:
    """Unpickling this calls os.mkdir(marker): stands for any code a hostile pickle runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _hostile(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    return path


def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "payload-ran"
    path = _hostile(tmp_path / "model.ckpt", marker)
    with pytest.raises(InputError) as caught:
        load_torch_file(path, "use another file")
    message = str(caught.value)
    assert message.startswith(f"{path}: holds Python objects") and "mkdir" in message and "\n" not in message
    with pytest.raises(InputError):
        load_state_dict_file(path)
    assert not marker.exists()


def test_no_full_unpickle_when_the_safe_load_raises_type_error(tmp_path, monkeypatch):
    """A torch without `weights_only` raises TypeError for the keyword: the old loader then loaded fully."""
    marker = tmp_path / "payload-ran"
    path = _hostile(tmp_path / "model.pt", marker)
    real_load, calls = torch.load, []

    def old_torch_load(f, map_location=None, **kwargs):
        calls.append(kwargs)
        if "weights_only" in kwargs or "mmap" in kwargs:
            raise TypeError("load() got an unexpected keyword argument 'weights_only'")
        return real_load(f, map_location=map_location, weights_only=False)  # what a torch < 1.13 does

    monkeypatch.setattr(torch, "load", old_torch_load)
    with pytest.raises(InputError):
        load_state_dict_file(path)
    assert all(call.get("weights_only") is True for call in calls), calls
    assert not marker.exists()


def test_a_torch_without_weights_only_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)

    def load_without_option(f, map_location=None, pickle_module=None, **pickle_load_args):
        raise AssertionError("a full unpickle was attempted")

    monkeypatch.setattr(torch, "load", load_without_option)
    assert not torch_files.supports_weights_only()
    with pytest.raises(InputError, match="has no torch.load\\(weights_only=True\\)"):
        load_torch_file(path, "fix")


def test_plain_and_lightning_style_checkpoints_load(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.arange(3.0)}, plain)
    assert torch.equal(load_state_dict_file(plain)["w"], torch.arange(3.0))
    lightning = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"geometry.w": torch.ones(2)}, "epoch": 3, "global_step": 7,
                "pytorch-lightning_version": "2.0.0", "loops": {"fit_loop": {"state_dict": {}}},
                "callbacks": {"ModelCheckpoint": {"dirpath": pathlib.PurePosixPath("/runs/ckpts"),
                                                  "best_model_score": torch.tensor(0.5)}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]}]}, lightning)
    assert set(load_state_dict_file(lightning)) == {"geometry.w"}
    legacy = tmp_path / "legacy.pt"  # the pre-1.6 (non-zip) format cannot be memory-mapped: still loads
    torch.save({"w": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_torch_file(legacy, "fix")["w"], torch.ones(1))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"\x80\x04not a pickle"])
def test_broken_files_are_one_input_error(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_torch_file(path, "re-download it")
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


class _Tiny(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def _load_adapter(monkeypatch):
    fake = types.ModuleType("threestudio")
    fake.find = lambda name: _Tiny
    monkeypatch.setitem(sys.modules, "threestudio", fake)
    spec = importlib.util.spec_from_file_location("congeal_security_congealing_run", ADAPTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trial(root: Path) -> Path:
    from omegaconf import OmegaConf

    (root / "configs").mkdir(parents=True)
    (root / "ckpts").mkdir()
    system = {f"{part}_type": "tiny" for part in ("geometry", "material", "background", "renderer")}
    system.update({part: {} for part in ("geometry", "material", "background", "renderer")})
    OmegaConf.save(OmegaConf.create({"system": system}), root / "configs" / "parsed.yaml")
    return root


def test_congealing_run_checkpoint_is_never_fully_unpickled(tmp_path, monkeypatch):
    pytest.importorskip("omegaconf")
    adapter = _load_adapter(monkeypatch)
    trial = _trial(tmp_path / "trial")
    marker = tmp_path / "payload-ran"
    _hostile(trial / "ckpts" / "last.ckpt", marker)
    with pytest.raises(InputError, match="holds Python objects"):
        adapter.load_congealing_run(str(trial))
    assert not marker.exists()
    # a checkpoint of weights and plain data loads, and its weights reach the modules
    state = {f"{p}.w": torch.full((2,), float(i)) for i, p in enumerate(("geometry", "material", "background"))}
    torch.save({"state_dict": state, "epoch": 0, "global_step": 0}, trial / "ckpts" / "last.ckpt")
    run = adapter.load_congealing_run(str(trial))
    assert torch.equal(run.material.w, torch.ones(2))
    torch.save([1, 2], trial / "ckpts" / "last.ckpt")
    with pytest.raises(InputError, match="holds no state_dict"):
        adapter.load_congealing_run(str(trial))
