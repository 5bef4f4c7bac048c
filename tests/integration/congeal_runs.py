"""TEST-ONLY: `congeal-system` runs of the tiny config in subprocesses (tests/integration/launch_cpu.py), for the DDP
and kill -9 tests. The shipped TI guidance and prompt processor (tiny CLIP), the real congeal-mvdream-guidance over
a tiny MVDream model; the renderer is the plain-torch test renderer of tiny_modules.py.

    world = make_world(tmp_path)                       # photos, tiny MVDream checkpoint, tiny SD folder
    config = write_config(world, "single", ti_steps=3, sds_steps=3)
    launch(config, world)                              # -> world.root / "congeal-tiny" / "single"
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TINY_CONFIG = REPO / "configs" / "test" / "congeal-tiny.yaml"


@dataclass
class World:
    root: Path
    photos: Path
    mvdream_ckpt: Path
    tiny_sd: Path


def make_world(root: Path) -> World:
    from helpers.mvdream import TINY_OVERRIDES
    from helpers.textual_inversion import pipeline_dir
    from test_datamodule import write_collection

    from congeal.models.mvdream import build_mvdream

    torch.manual_seed(0)
    ckpt = root / "tiny-mvdream.pt"
    torch.save(build_mvdream(overrides=TINY_OVERRIDES).state_dict(), ckpt)
    photos = write_collection(root / "photos", n=3, size=40)
    return World(root=root, photos=Path(photos), mvdream_ckpt=ckpt, tiny_sd=Path(pipeline_dir()))


def write_config(world: World, tag: str, ti_steps: int, sds_steps: int, photos_per_batch: int = 2,
                 cameras_per_batch: int = 4, **overrides: Any) -> Path:
    """The tiny config with the shipped TI guidance + prompt processor; one checkpoint per step."""
    from helpers.mvdream import TINY_OVERRIDES
    from omegaconf import OmegaConf

    raw = OmegaConf.load(TINY_CONFIG)
    settings = {
        "data.image_dir": str(world.photos), "exp_root_dir": str(world.root), "tag": tag,
        "data.batch_size": photos_per_batch, "data.camera.batch_size": cameras_per_batch,
        "system.guidance.ckpt_path": str(world.mvdream_ckpt), "system.guidance.model_overrides": TINY_OVERRIDES,
        "system.ti_steps": ti_steps, "trainer.max_steps": ti_steps + sds_steps,
        "trainer.enable_progress_bar": False,
        "system.ti_guidance_type": "congeal-textual-inversion-guidance",
        "system.ti_guidance": {"pretrained_model_name_or_path": str(world.tiny_sd), "denoiser": "mvdream",
                               "init_word": "toy", "resolution": 32, "half_precision_weights": False},
        "system.prompt_processor_type": "congeal-prompt-processor",
        "system.prompt_processor": {"pretrained_model_name_or_path": str(world.tiny_sd),
                                    "prompt": "a photo of a <congeal>", "negative_prompt": "blurry", "spawn": False},
        "checkpoint": {"save_last": True, "save_top_k": -1, "every_n_train_steps": 1},
    }
    settings.update(overrides)
    for key, value in settings.items():
        OmegaConf.update(raw, key, value, merge=False, force_add=True)
    path = world.root / f"{tag}.yaml"
    OmegaConf.save(raw, path)
    return path


def command(config: Path, devices: int = 1, extra: Optional[List[str]] = None) -> List[str]:
    return [sys.executable, str(HERE / "launch_cpu.py"), "--config", str(config), "--train",
            "--threestudio-extensions", "--devices", str(devices), *(extra or [])]


def env() -> Dict[str, str]:
    path = os.pathsep.join([str(REPO / "custom" / "threestudio-congeal"), str(REPO / "tests"),
                            os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def launch(config: Path, world: World, devices: int = 1, extra: Optional[List[str]] = None,
           timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(command(config, devices, extra), env=env(), cwd=world.root, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def trial(world: World, tag: str) -> Path:
    return world.root / "congeal-tiny" / tag


def final_state(trial_dir: Path) -> Dict[str, torch.Tensor]:
    """y* and every NeRF tensor of the run's last checkpoint."""
    saved = torch.load(trial_dir / "ckpts" / "last.ckpt", map_location="cpu", weights_only=False)
    state = {f"y*/{k}": v for k, v in saved["congeal_y_star"].items()}
    state.update({k: v for k, v in saved["state_dict"].items() if k.startswith(("geometry.", "material.",
                                                                                 "background."))})
    return state
