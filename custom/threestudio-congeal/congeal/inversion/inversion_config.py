"""The settings of a textual-inversion run, and the prompt templates it trains with.

    config = TextualInversionConfig(token="<congeal>", init_word="toy", steps=500)
    config.validate()                                   # InputError for settings that cannot run
    TextualInversionConfig.from_dict(asdict(config))     # round trip through checkpoints and invert.json
"""
from dataclasses import dataclass, fields
from typing import Any, Dict, Tuple

from congeal.common.errors import InputError

# object-description prompts in the style of CLIP's ImageNet templates ("{}" is the placeholder)
DEFAULT_TEMPLATES = (
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a photo of the small {}",
    "a good photo of a {}",
    "a photo of one {}",
    "a rendition of the {}",
    "a photo of the large {}",
    "a photo of a nice {}",
)


@dataclass
class TextualInversionConfig:
    """Settings of one inversion run (serialised into checkpoints and `invert.json`)."""

    token: str = "<congeal>"
    """Placeholder name used in prompts."""
    init_word: str = "object"
    """Single-token word the rows start from."""
    n_vectors: int = 1
    """Embedding vectors behind the token."""
    steps: int = 1000
    """Training steps of the run."""
    batch_size: int = 4
    """Photos per step."""
    resolution: int = 256
    """Training size in pixels (256 px -> 32x32 latents); a multiple of 8."""
    lr: float = 2e-3
    """AdamW learning rate (the placeholder rows are the only trained tensor)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    adam_betas: Tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    templates: Tuple[str, ...] = DEFAULT_TEMPLATES
    """Prompts with one "{}" for the token."""
    flip: bool = True
    """Also train on mirrored photos."""
    background: str = "keep"
    """"keep", or "white" to composite masked photos onto white (objects, not backgrounds)."""
    mixed_precision: str = "auto"
    """"auto" (bf16/fp16 frozen weights on CUDA, fp32 on CPU), "no", "bf16", "fp16"."""
    min_timestep: int = 0
    """Timesteps are sampled uniformly in [min_timestep, max_timestep)."""
    max_timestep: int = 1000
    """See `min_timestep`."""
    seed: int = 0
    """Seed of the run's generator (photos, timesteps, noise, templates)."""

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TextualInversionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(None, f"unknown textual-inversion settings {unknown}", f"use only {sorted(known)}")
        values = dict(values)
        for key in ("templates", "adam_betas"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def validate(self) -> None:
        """Raises InputError on settings that cannot run."""
        if not self.templates or any(t.count("{}") != 1 for t in self.templates):
            raise InputError(None, "every prompt template must contain exactly one '{}'",
                             'e.g. "a photo of a {}"')
        if self.batch_size < 1 or self.steps < 0 or self.resolution < 8 or self.resolution % 8:
            raise InputError(None, f"batch_size={self.batch_size}, steps={self.steps}, resolution={self.resolution}",
                             "use batch_size >= 1, steps >= 0 and a resolution divisible by 8")
        if self.background not in ("keep", "white"):
            raise InputError(None, f"background {self.background!r} is not 'keep' or 'white'", "use keep or white")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise InputError(None, f"mixed_precision {self.mixed_precision!r}", "use auto, no, bf16 or fp16")
        if not 0 <= self.min_timestep < self.max_timestep:
            raise InputError(None, f"timestep range [{self.min_timestep}, {self.max_timestep})",
                             "use 0 <= min_timestep < max_timestep <= 1000")
