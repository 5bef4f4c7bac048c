"""registration.config: presets and what a config holds, independent of the omegaconf version."""


def test_tuple_fields_are_tuples_whatever_the_omegaconf_version():
    """omegaconf < 2.4 (threestudio pins 2.3.0) turns Tuple fields into lists; the config must not depend on it."""
    from congeal.registration.registration_config import config_from_dict, config_to_dict, make_config

    cfg = make_config("fast", overrides=["grid.fovy_deg=[30.0,45.0]"])
    assert cfg.grid.fovy_deg == (30.0, 45.0) and isinstance(cfg.grid.fovy_deg, tuple)
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_the_refinement_colour_term_is_colour_whatever_the_search_features():
    """The paper preset (DINOv2 search) refines with the same cheap colour term as the fast preset."""
    from congeal.registration.registration_config import make_config

    paper, fast = make_config("paper"), make_config("fast")
    assert paper.features.name == "dinov2" and paper.refine.feature_weight > 0
    assert paper.refine.feature_resolution == fast.refine.feature_resolution


def test_a_run_written_with_a_removed_setting_stays_readable():
    import pytest

    from congeal.registration.registration_config import config_from_dict, config_to_dict, make_config

    stored = config_to_dict(make_config("fast"))
    stored["refine"]["silhouette_scales"] = [1, 2, 4]  # a setting an earlier version had
    with pytest.warns(UserWarning, match="refine.silhouette_scales"):
        assert config_from_dict(stored) == make_config("fast")
