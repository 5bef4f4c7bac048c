"""`congeal-system` on CPU: TI then SDS in one run, canonical export, resume from either stage, clear errors.

The Trainer is built the way launch.py builds it (same callbacks and loggers) with accelerator="cpu": launch.py
hard-codes a GPU. The SDS guidance is the real `congeal-mvdream-guidance` (threestudio-mvdream's guidance code)
over a tiny MVDream model built from config; renderer / TI guidance / prompt processor are the TEST-ONLY modules of
tiny_modules.py (see its docstring for why).
"""
import copy
import csv
import importlib
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "test" / "congeal-tiny.yaml"
TI_STEPS, SDS_STEPS = 3, 3


@pytest.fixture(scope="module")
def cpu_threestudio(extension_via_launch, mvdream_available):
    """threestudio's get_device() hard-codes cuda:<rank>; route every module that imported it to the CPU."""
    if not mvdream_available:
        pytest.skip("threestudio-mvdream (custom/threestudio-mvdream + the mvdream package) is not available")
    import threestudio.utils.misc as misc

    original = misc.get_device
    cpu = lambda: torch.device("cpu")  # noqa: E731
    patched = [m for m in list(sys.modules.values()) if getattr(m, "get_device", None) is original]
    for module in patched:
        module.get_device = cpu
    import tiny_modules  # noqa: F401  (registers the congeal-test-* names)

    yield
    for module in patched:
        module.get_device = original


@pytest.fixture(scope="module")
def tiny_mvdream_ckpt(tmp_path_factory, cpu_threestudio) -> Dict[str, Any]:
    from helpers.mvdream import TINY_OVERRIDES

    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    model = build_mvdream(overrides=TINY_OVERRIDES)
    path = tmp_path_factory.mktemp("mvdream") / "tiny-mvdream.pt"
    torch.save(model.state_dict(), path)
    return {"path": str(path), "overrides": TINY_OVERRIDES}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from test_datamodule import write_collection

    return write_collection(tmp_path_factory.mktemp("photos") / "photos", n=3, size=40)


def load_cfg(root: Path, photos: Path, ckpt: Dict[str, Any], tag: str, **overrides):
    """threestudio's load_config on the tiny config with the test's paths (what launch.py does with CLI extras)."""
    from omegaconf import OmegaConf
    from threestudio.utils.config import load_config

    raw = OmegaConf.load(TINY_CONFIG)
    raw.data.image_dir = str(photos)
    raw.exp_root_dir = str(root)
    raw.tag = tag
    raw.system.guidance.ckpt_path = ckpt["path"]
    raw.system.guidance.model_overrides = ckpt["overrides"]
    raw.system.ti_steps = TI_STEPS
    raw.trainer.max_steps = TI_STEPS + SDS_STEPS
    for key, value in overrides.items():
        OmegaConf.update(raw, key, value, merge=False, force_add=True)
    path = root / f"{tag}.yaml"
    OmegaConf.save(raw, path)
    return load_config(str(path)), str(path)


class Recorder:
    """A callback that records, right after a (re)start, what the system holds, and the stage of each step."""

    def __init__(self) -> None:
        self.stages: List[tuple] = []
        self.at_start: Dict[str, Any] = {}

    def as_callback(self):
        import pytorch_lightning as pl

        recorder = self

        class _Callback(pl.Callback):
            def on_train_start(self, trainer, module):
                recorder.at_start = {
                    "global_step": trainer.global_step,
                    "weights": {k: v.detach().clone() for k, v in module.state_dict().items()},
                    "y_star": {k: v.clone() for k, v in module.current_y_star().items()},
                    # deep copy: the state dict shares tensors (Adam's moments and step counts) with the optimizer
                    "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),
                }

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                recorder.stages.append((trainer.global_step - 1, module.stage_of(trainer.global_step - 1),
                                        "images" in batch, "rays_o" in batch))

        return _Callback()


def run(cfg, config_path: str, resume: str = None, recorder: Recorder = None):
    """Build datamodule, system, callbacks, loggers and Trainer as launch.py does; fit then test."""
    import os

    import pytorch_lightning as pl
    import threestudio
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from threestudio.utils.callbacks import ConfigSnapshotCallback, CustomProgressBar

    pl.seed_everything(cfg.seed, workers=True)
    dm = threestudio.find(cfg.data_type)(cfg.data)
    system = threestudio.find(cfg.system_type)(cfg.system, resumed=resume is not None)
    system.set_save_dir(os.path.join(cfg.trial_dir, "save"))
    callbacks = [
        ModelCheckpoint(dirpath=os.path.join(cfg.trial_dir, "ckpts"), **cfg.checkpoint),
        LearningRateMonitor(logging_interval="step"),
        ConfigSnapshotCallback(config_path, cfg, os.path.join(cfg.trial_dir, "configs"), use_version=False),
        CustomProgressBar(refresh_rate=1),
    ] + ([recorder.as_callback()] if recorder else [])
    loggers = [TensorBoardLogger(cfg.trial_dir, name="tb_logs"), CSVLogger(cfg.trial_dir, name="csv_logs")]
    trainer = pl.Trainer(callbacks=callbacks, logger=loggers, inference_mode=False, accelerator="cpu", devices=1,
                         **cfg.trainer)
    trainer.fit(system, datamodule=dm, ckpt_path=resume)
    trainer.test(system, datamodule=dm)
    return system, Path(cfg.trial_dir)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, photos, tiny_mvdream_ckpt):
    root = tmp_path_factory.mktemp("runs")
    cfg, path = load_cfg(root, photos, tiny_mvdream_ckpt, "full")
    recorder = Recorder()
    system, trial = run(cfg, path, recorder=recorder)
    return {"root": root, "system": system, "trial": trial, "recorder": recorder}


def ckpt(trial: Path, step: int) -> Path:
    matches = sorted((trial / "ckpts").glob(f"*step={step}.ckpt"))
    assert matches, sorted(p.name for p in (trial / "ckpts").iterdir())
    return matches[0]


def test_stages_follow_the_global_step(full_run):
    stages = full_run["recorder"].stages
    assert [s[:2] for s in stages] == [(i, "ti" if i < TI_STEPS else "sds") for i in range(TI_STEPS + SDS_STEPS)]
    assert all(has_images and has_rays for _, stage, has_images, has_rays in stages if stage == "ti")
    assert all(has_rays for _, stage, _, has_rays in stages if stage == "sds")


def test_each_stage_trains_only_its_own_parameters(full_run):
    trial = full_run["trial"]
    load = lambda step: torch.load(ckpt(trial, step), map_location="cpu", weights_only=False)  # noqa: E731
    first, end_ti, last = load(1), load(TI_STEPS), load(TI_STEPS + SDS_STEPS)
    geometry = lambda c: {k: v for k, v in c["state_dict"].items() if k.startswith("geometry.")}  # noqa: E731
    y_star = lambda c: torch.cat(list(c["congeal_y_star"].values()))  # noqa: E731
    assert all(torch.equal(v, geometry(end_ti)[k]) for k, v in geometry(first).items()), "TI moved the NeRF"
    assert not torch.equal(y_star(first), y_star(end_ti)), "TI did not move y*"
    assert torch.equal(y_star(end_ti), y_star(last)), "SDS moved y*"
    assert any(not torch.equal(v, geometry(last)[k]) for k, v in geometry(end_ti).items()), "SDS did not move the NeRF"


def test_both_losses_are_logged(full_run):
    metrics = full_run["trial"] / "csv_logs" / "version_0" / "metrics.csv"
    rows = list(csv.DictReader(metrics.open()))
    ti = [r for r in rows if r.get("train/loss_ti")]
    sds = [r for r in rows if r.get("train/loss_sds")]
    assert len(ti) == TI_STEPS and len(sds) == SDS_STEPS
    assert all(float(r["train/loss_ti"]) >= 0 for r in ti)
    assert list((full_run["trial"] / "tb_logs").rglob("events.out.tfevents*")), "no TensorBoard events"


def test_outputs_for_stage_three(full_run):
    from congeal.canonical.grid import load_canonical
    from congeal.inversion.embedding_files import load_learned_embeds

    trial = full_run["trial"]
    canonical = load_canonical(trial / "save" / "canonical.safetensors")
    assert canonical.density.shape == (8, 8, 8) and canonical.rgb.shape == (8, 8, 8, 3)
    assert float(canonical.density.min()) >= 0 and float(canonical.density.max()) > 0
    # blob_magic3d density bias: denser at the centre than at the corners
    assert float(canonical.density[3:5, 3:5, 3:5].mean()) > float(canonical.density[0, 0, 0])
    embeds = load_learned_embeds(trial / "learned_embeds.safetensors")
    final = torch.load(ckpt(trial, TI_STEPS + SDS_STEPS), map_location="cpu", weights_only=False)
    assert all(torch.equal(embeds[k], v) for k, v in final["congeal_y_star"].items())
    assert (trial / "configs" / "parsed.yaml").is_file()
    assert list((trial / "save").glob("it*-test.mp4")), sorted(p.name for p in (trial / "save").iterdir())


@pytest.mark.parametrize("step", [1, TI_STEPS + 1], ids=["from-ti", "from-sds"])
def test_resume_restores_state_and_stage(full_run, photos, tiny_mvdream_ckpt, step):
    checkpoint_path = ckpt(full_run["trial"], step)
    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    cfg, path = load_cfg(full_run["root"], photos, tiny_mvdream_ckpt, f"resume-{step}")
    recorder = Recorder()
    system, trial = run(cfg, path, resume=str(checkpoint_path), recorder=recorder)
    start = recorder.at_start
    assert start["global_step"] == step
    assert set(start["weights"]) == set(saved["state_dict"])
    assert all(torch.equal(start["weights"][k], v) for k, v in saved["state_dict"].items())
    assert all(torch.equal(start["y_star"][k], v) for k, v in saved["congeal_y_star"].items())
    assert_same_optimizer_state(start["optimizer"], saved["optimizer_states"][0])
    # the resumed run continues in the right stage and finishes
    assert [s[:2] for s in recorder.stages] == [
        (i, "ti" if i < TI_STEPS else "sds") for i in range(step, TI_STEPS + SDS_STEPS)]
    assert (trial / "save" / "canonical.safetensors").is_file()


def assert_same_optimizer_state(live: Dict[str, Any], saved: Dict[str, Any]) -> None:
    assert [g["name"] for g in live["param_groups"]] == [g["name"] for g in saved["param_groups"]]
    assert "congeal_ti" in [g["name"] for g in live["param_groups"]]
    assert set(live["state"]) == set(saved["state"]) and saved["state"]
    for index, state in saved["state"].items():
        for key, value in state.items():
            other = live["state"][index][key]
            assert torch.equal(torch.as_tensor(other), torch.as_tensor(value)), (index, key)


@pytest.mark.parametrize("guidance", ["mvdream-multiview-diffusion-guidance", "congeal-mvdream-guidance"])
def test_missing_threestudio_mvdream_is_explained(cpu_threestudio, photos, tiny_mvdream_ckpt, tmp_path, monkeypatch,
                                                  guidance):
    import threestudio

    deps = sys.modules["threestudio-congeal.dependencies"]
    cfg, _ = load_cfg(tmp_path, photos, tiny_mvdream_ckpt, "no-mvdream", **{"system.guidance_type": guidance})
    monkeypatch.delitem(threestudio.__modules__, "mvdream-multiview-diffusion-guidance")
    with pytest.raises(deps.MissingDependencyError, match="threestudio-mvdream.*git clone"):
        threestudio.find(cfg.system_type)(cfg.system)


def test_missing_mvdream_package_and_checkpoint_are_explained(cpu_threestudio, photos, tiny_mvdream_ckpt, tmp_path,
                                                             monkeypatch):
    import importlib.util

    import threestudio

    deps = sys.modules["threestudio-congeal.dependencies"]
    cfg, _ = load_cfg(tmp_path, photos, tiny_mvdream_ckpt, "no-ckpt",
                      **{"system.guidance.ckpt_path": str(tmp_path / "nope.pt")})
    with pytest.raises(deps.MissingDependencyError, match="nope.pt.*no such file"):
        threestudio.find(cfg.system_type)(cfg.system)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mvdream" else real(name, *a))
    with pytest.raises(deps.MissingDependencyError, match="MVDream package is not installed"):
        threestudio.find(cfg.system_type)(cfg.system)


@pytest.mark.parametrize("name", ["congeal.yaml", "congeal-sdf.yaml", "test/congeal-tiny.yaml"])
def test_shipped_configs_parse(extension_via_launch, name, tmp_path):
    """Each config resolves with threestudio's load_config and its sections parse into our classes' Configs."""
    from threestudio.utils.config import load_config, parse_structured

    text = (REPO / "configs" / name).read_text()
    assert "stabilityai/stable-diffusion-2-1-base" not in text  # gone from the hub
    cfg = load_config(str(REPO / "configs" / name), cli_args=[f"data.image_dir={tmp_path}/photos",
                                                              f"exp_root_dir={tmp_path}"])
    system_cls = sys.modules["threestudio-congeal.systems.congeal_system"].CongealSystem
    system_cfg = parse_structured(system_cls.Config, cfg.system)
    data_cfg = parse_structured(
        sys.modules["threestudio-congeal.data.image_collection"].ImageCollectionDataModuleConfig, cfg.data)
    assert data_cfg.image_dir.endswith("photos")
    if name != "test/congeal-tiny.yaml":
        assert system_cfg.ti_steps == 1000 and cfg.trainer.max_steps == 11000
        assert cfg.system.guidance.guidance_scale == 50.0 and cfg.data.camera.resolution_milestones == [5000]
        assert "<congeal>" in cfg.system.prompt_processor.prompt


def test_real_ti_guidance_and_prompt_processor_end_to_end(cpu_threestudio, photos, tiny_mvdream_ckpt, tmp_path,
                                                          monkeypatch):
    """The shipped adapters, not the test ones: congeal-textual-inversion-guidance (sharing the SDS guidance's tiny
    MVDream model), congeal-prompt-processor (tiny CLIP, context dim 32 = the tiny MVDream's) and
    congeal-mvdream-guidance, through TI, the hand-off and SDS, then test/export."""
    from helpers.textual_inversion import pipeline_dir

    from congeal.canonical.grid import load_canonical
    from congeal.inversion.embedding_files import load_learned_embeds

    monkeypatch.chdir(tmp_path)  # the prompt processor caches embeddings under ./.threestudio_cache
    tiny_sd = str(pipeline_dir())
    cfg, path = load_cfg(tmp_path, photos, tiny_mvdream_ckpt, "real-adapters", **{
        "system.ti_steps": 2, "trainer.max_steps": 4, "checkpoint.every_n_train_steps": 4,
        "system.ti_guidance_type": "congeal-textual-inversion-guidance",
        "system.ti_guidance": {"pretrained_model_name_or_path": tiny_sd, "denoiser": "mvdream", "init_word": "toy",
                               "resolution": 32, "half_precision_weights": False},
        "system.prompt_processor_type": "congeal-prompt-processor",
        "system.prompt_processor": {"pretrained_model_name_or_path": tiny_sd, "prompt": "a photo of a <congeal>",
                                    "negative_prompt": "blurry", "spawn": False},
    })
    recorder = Recorder()
    system, trial = run(cfg, path, recorder=recorder)
    assert [s[:2] for s in recorder.stages] == [(0, "ti"), (1, "ti"), (2, "sds"), (3, "sds")]
    assert system.ti_guidance.trainer.denoiser.model is system.guidance.model  # one MVDream in memory
    y_star = load_learned_embeds(trial / "learned_embeds.safetensors")["<congeal>"]
    assert y_star.shape == (1, 32)
    assert torch.equal(y_star, system.ti_guidance.learned_embeds()["<congeal>"])
    # the SDS prompt carries y*: the prompt processor was built from the file the system wrote
    assert system.prompt_processor.cfg.learned_embeds_path == str(trial / "learned_embeds.safetensors")
    assert system.prompt_utils.text_embeddings.shape == (1, 77, 32)
    assert load_canonical(trial / "save" / "canonical.safetensors").density.shape == (8, 8, 8)
    # a TI trainer that would cast its denoiser (half-precision weights on CUDA) must not get the SDS model
    ti = system.ti_guidance
    ti.trainer.weight_dtype, ti.trainer.denoiser = torch.bfloat16, None
    system._share_mvdream_model()
    assert ti.trainer.denoiser is None and next(system.guidance.model.parameters()).dtype == torch.float32


def test_launch_test_mode_rebakes_the_same_canonical(full_run, photos, tiny_mvdream_ckpt):
    """`launch.py --test resume=<ckpt>`: a fresh system restores y* and the NeRF and bakes the identical canonical."""
    import os

    import pytorch_lightning as pl
    import threestudio

    from congeal.canonical.grid import load_canonical
    from congeal.inversion.embedding_files import load_learned_embeds

    last = ckpt(full_run["trial"], TI_STEPS + SDS_STEPS)
    cfg, _ = load_cfg(full_run["root"], photos, tiny_mvdream_ckpt, "test-mode", resume=str(last))
    dm = threestudio.find(cfg.data_type)(cfg.data)
    system = threestudio.find(cfg.system_type)(cfg.system, resumed=True)
    system.set_save_dir(os.path.join(cfg.trial_dir, "save"))
    saved = torch.load(last, map_location="cpu", weights_only=False)
    system.set_resume_status(saved["epoch"], saved["global_step"])  # what launch.py's set_system_status does
    trainer = pl.Trainer(logger=False, inference_mode=False, accelerator="cpu", devices=1, enable_progress_bar=False)
    trainer.test(system, datamodule=dm, ckpt_path=str(last))
    trial = Path(cfg.trial_dir)
    fresh = load_canonical(trial / "save" / "canonical.safetensors")
    original = load_canonical(full_run["trial"] / "save" / "canonical.safetensors")
    assert torch.equal(fresh.density, original.density) and torch.equal(fresh.rgb, original.rgb)
    assert torch.equal(load_learned_embeds(trial / "learned_embeds.safetensors")["<congeal>"],
                       load_learned_embeds(full_run["trial"] / "learned_embeds.safetensors")["<congeal>"])


def test_sdf_geometry_bakes_to_a_density_grid(cpu_threestudio, photos, tiny_mvdream_ckpt, tmp_path):
    """implicit-sdf (congeal-sdf.yaml's geometry, pure-torch encoding here): sdf < 0 -> dense, sdf > 0 -> ~0."""
    import threestudio

    cfg, _ = load_cfg(tmp_path, photos, tiny_mvdream_ckpt, "sdf", **{
        "system.geometry_type": "implicit-sdf",
        "system.geometry": {"radius": 1.0, "normal_type": None, "sdf_bias": "sphere", "sdf_bias_params": 0.5,
                            "pos_encoding_config": {"otype": "ProgressiveBandFrequency", "n_frequencies": 2},
                            "mlp_network_config": {"otype": "VanillaMLP", "activation": "ReLU",
                                                   "output_activation": "none", "n_neurons": 16,
                                                   "n_hidden_layers": 1}},
        "system.sdf_beta": 0.05, "system.sdf_max_density": 50.0,
    })
    from congeal.canonical.grid import grid_points

    system = threestudio.find(cfg.system_type)(cfg.system)
    canonical = system.bake_canonical(16)
    points = grid_points(16, 1.0).reshape(-1, 3)
    sdf = system.geometry(points, output_normal=False)["sdf"].reshape(16, 16, 16).detach()
    inside, outside = sdf < -0.1, sdf > 0.1
    assert inside.any() and outside.any()
    assert float(canonical.density[inside].min()) > 0.5 * 50.0
    assert float(canonical.density[outside].max()) < 0.2 * 50.0
    assert float(canonical.rgb.min()) >= 0.0 and float(canonical.rgb.max()) <= 1.0
