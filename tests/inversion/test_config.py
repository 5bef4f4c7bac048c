"""TextualInversionConfig: the round trip through checkpoints / invert.json, and settings that cannot run."""
from dataclasses import asdict

import pytest

from congeal.common.errors import InputError
from congeal.inversion.inversion_config import DEFAULT_TEMPLATES, TextualInversionConfig


def test_round_trip_through_a_plain_dict():
    config = TextualInversionConfig(token="<t>", init_word="toy", templates=("a {}",), adam_betas=(0.8, 0.9))
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}  # what JSON gives back
    assert TextualInversionConfig.from_dict(as_json) == config
    assert TextualInversionConfig().templates == DEFAULT_TEMPLATES
    with pytest.raises(InputError, match="unknown textual-inversion settings"):
        TextualInversionConfig.from_dict({"stpes": 3})


@pytest.mark.parametrize("overrides, match", [
    (dict(templates=("a photo",)), "exactly one"),
    (dict(resolution=30), "divisible by 8"),
    (dict(background="black"), "'keep' or 'white'"),
    (dict(mixed_precision="fp8"), "mixed_precision"),
    (dict(min_timestep=500, max_timestep=500), "timestep range"),
])
def test_validate_refuses_settings_that_cannot_run(overrides, match):
    with pytest.raises(InputError, match=match):
        TextualInversionConfig(**overrides).validate()
