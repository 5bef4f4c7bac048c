"""TEST-ONLY: threestudio's `launch.py` flow on the CPU, as a script (for DDP and kill -9 tests).

    THREESTUDIO_ROOT=... python tests/integration/launch_cpu.py --config C.yaml --train [--devices 2] key=value ...

launch.py hard-codes `accelerator="gpu"`; this builds the datamodule, system, callbacks, loggers and Trainer the
same way with `accelerator="cpu"` (DDP over gloo when --devices > 1: Lightning re-executes this script once per
extra rank). The extension is loaded exactly as launch.py loads `custom/threestudio-congeal` (by path, module name
`threestudio-congeal`); the test-only modules of tiny_modules.py are registered too.
"""
import argparse
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _setup_imports() -> None:
    root = os.environ["THREESTUDIO_ROOT"]
    sys.path.insert(0, str(Path(root).resolve()))
    sys.path.insert(0, str(HERE))
    import conftest  # noqa: F401  (installs the stand-ins for CUDA-only packages when missing)

    spec = importlib.util.spec_from_file_location("threestudio-congeal",
                                                  REPO / "custom" / "threestudio-congeal" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["threestudio-congeal"] = module
    spec.loader.exec_module(module)
    import tiny_modules  # noqa: F401  (registers the congeal-test-* modules)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--threestudio-extensions", action="store_true",
                        help="also load THREESTUDIO_ROOT/custom/* (threestudio-mvdream) with get_device on the CPU")
    group = parser.add_mutually_exclusive_group(required=True)
    for mode in ("train", "test", "export"):
        group.add_argument(f"--{mode}", action="store_true")
    args, extras = parser.parse_known_args()
    _setup_imports()
    if args.threestudio_extensions:
        load_threestudio_extensions_on_cpu()

    import pytorch_lightning as pl
    import threestudio
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from threestudio.utils.callbacks import ConfigSnapshotCallback
    from threestudio.utils.config import load_config
    from threestudio.utils.misc import get_rank

    torch.set_num_threads(1)
    cfg = load_config(args.config, cli_args=extras, n_gpus=args.devices)
    pl.seed_everything(cfg.seed + get_rank(), workers=True)
    dm = threestudio.find(cfg.data_type)(cfg.data)
    system = threestudio.find(cfg.system_type)(cfg.system, resumed=cfg.resume is not None)
    system.set_save_dir(os.path.join(cfg.trial_dir, "save"))
    callbacks, loggers = [], []
    if args.train:
        callbacks = [ModelCheckpoint(dirpath=os.path.join(cfg.trial_dir, "ckpts"), **cfg.checkpoint),
                     ConfigSnapshotCallback(args.config, cfg, os.path.join(cfg.trial_dir, "configs"),
                                            use_version=False)]
        loggers = [TensorBoardLogger(cfg.trial_dir, name="tb_logs"), CSVLogger(cfg.trial_dir, name="csv_logs")]
    strategy = "ddp" if args.devices > 1 else "auto"
    trainer = pl.Trainer(callbacks=callbacks, logger=loggers or False, inference_mode=False, accelerator="cpu",
                         devices=args.devices, strategy=strategy, **cfg.trainer)
    if args.train:
        trainer.fit(system, datamodule=dm, ckpt_path=cfg.resume)
    elif args.test:
        trainer.test(system, datamodule=dm, ckpt_path=cfg.resume)
    else:
        trainer.predict(system, datamodule=dm, ckpt_path=cfg.resume)


def load_threestudio_extensions_on_cpu() -> None:
    """TEST-ONLY (--threestudio-extensions, for congeal-system runs): load every other extension in
    THREESTUDIO_ROOT/custom the way launch.py does (threestudio-mvdream registers the SDS guidance), make `import
    mvdream` work as tests/helpers/mvdream.py does, and route threestudio's get_device() (hard-coded cuda:<rank>)
    to the CPU in every module that imported it."""
    import importlib.util as util

    sys.path.insert(0, str(REPO / "tests"))
    from helpers.mvdream import _pkg_resources_stand_in

    if "pkg_resources" not in sys.modules and util.find_spec("pkg_resources") is None:
        sys.modules["pkg_resources"] = _pkg_resources_stand_in()
    root = Path(os.environ["THREESTUDIO_ROOT"]).resolve()
    spec = util.spec_from_file_location("threestudio_launch", root / "launch.py")
    launch = util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for entry in sorted(os.listdir("custom")):
            path = os.path.join("custom", entry)
            if entry != "threestudio-congeal" and entry not in sys.modules and os.path.isfile(
                    os.path.join(path, "__init__.py")):
                if not launch.load_custom_module(path):
                    raise RuntimeError(f"cannot load the threestudio extension {path}")
    finally:
        os.chdir(cwd)
    import threestudio.utils.misc as misc
    import torch

    original = misc.get_device
    for module in list(sys.modules.values()):
        if getattr(module, "get_device", None) is original:
            module.get_device = lambda: torch.device("cpu")


if __name__ == "__main__":
    main()
