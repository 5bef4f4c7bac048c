"""`congeal-mvdream-guidance`: threestudio-mvdream's SDS guidance, with the model built without the OpenCLIP download.

    system.guidance_type: "congeal-mvdream-guidance"
    system.guidance: {model_name: "sd-v2.1-base-4view", ckpt_path: null}   # null: HF cache, else one download
    guidance = threestudio.find("congeal-mvdream-guidance")(cfg.system.guidance)

A subclass of threestudio-mvdream's `MultiviewDiffusionGuidance` (`mvdream-multiview-diffusion-guidance`): the SDS
loop, `__call__` signature, camera conditioning and step schedule are the parent's. Only model construction differs:
the parent's `configure` runs with its `build_model` swapped for `congeal.models.mvdream.build_mvdream`, which builds
the packaged config without pretrained OpenCLIP weights and loads the MVDream checkpoint strictly (every key filled).

threestudio loads `custom/*` extensions in directory-listing order, so threestudio-mvdream may not be registered yet
when this file is imported; the subclass is then created on first use.
"""
import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import threestudio

PARENT_NAME = "mvdream-multiview-diffusion-guidance"
NAME = "congeal-mvdream-guidance"

from ..registry import register  # idempotent: safe when the extension is loaded twice


@contextlib.contextmanager
def _swapped_build_model(parent_module: Any, builder: Any) -> Iterator[None]:
    """Temporarily replace `build_model` in threestudio-mvdream's guidance module (restored on exit)."""
    if not hasattr(parent_module, "build_model"):
        raise RuntimeError(f"{parent_module.__name__} has no build_model: this threestudio-mvdream version is not "
                           "supported by congeal-mvdream-guidance; use mvdream-multiview-diffusion-guidance")
    original = parent_module.build_model
    parent_module.build_model = builder
    try:
        yield
    finally:
        parent_module.build_model = original


def _make_class(parent: type) -> type:
    class CongealMVDreamGuidance(parent):
        """threestudio-mvdream's guidance; the model comes from `congeal.models.mvdream.build_mvdream`."""

        @dataclass
        class Config(parent.Config):
            # model_name (MVDream model) and ckpt_path (local .pt/.safetensors, null = HF cache) are the parent's
            repo_id: str = "MVDream/MVDream"
            """Where a null ckpt_path is looked up / downloaded from."""
            allow_download: bool = True
            """False: fail with a fix instead of downloading on a cache miss."""
            model_overrides: Optional[Any] = None
            """Nested dict merged into MVDream's packaged config (tests)."""

        cfg: Config

        def _build_model(self, model_name: str, ckpt_path: Optional[str] = None, cache_dir: Any = None) -> Any:
            from congeal.models.mvdream import build_mvdream, resolve_checkpoint

            checkpoint = resolve_checkpoint(model_name, ckpt_path, repo_id=self.cfg.repo_id,
                                            allow_download=self.cfg.allow_download)
            threestudio.info(f"Building MVDream {model_name} without OpenCLIP weights; loading {checkpoint}")
            return build_mvdream(model_name, checkpoint=checkpoint, overrides=self.cfg.model_overrides)

        def configure(self) -> None:
            with _swapped_build_model(sys.modules[parent.__module__], self._build_model):
                super().configure()

    CongealMVDreamGuidance.__qualname__ = CongealMVDreamGuidance.__name__
    return CongealMVDreamGuidance


_CLASS: Optional[type] = None


def guidance_class() -> type:
    """The subclass of the registered `mvdream-multiview-diffusion-guidance` (created once, when it exists)."""
    global _CLASS
    if _CLASS is None:
        if PARENT_NAME not in threestudio.__modules__:
            raise RuntimeError(f"{NAME} extends {PARENT_NAME}, which is not registered: put threestudio-mvdream in "
                               "threestudio/custom/ (and make `import mvdream` work); see `congeal doctor`")
        _CLASS = _make_class(threestudio.__modules__[PARENT_NAME])
    return _CLASS


class CongealMVDreamGuidance:
    """Registered when threestudio-mvdream is not loaded yet: instantiating it builds the real subclass then
    (threestudio instantiates guidance only after every extension has loaded). Same qualified name as the real
    subclass, so loading this extension twice (launch.py + pip package) registers one name without a clash."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return guidance_class()(*args, **kwargs)


if PARENT_NAME in threestudio.__modules__:
    CongealMVDreamGuidance = register(NAME)(guidance_class())  # noqa: F811 - the real subclass when possible
else:
    CongealMVDreamGuidance = register(NAME)(CongealMVDreamGuidance)
