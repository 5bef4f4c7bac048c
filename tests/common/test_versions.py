"""The one version parser: numeric leading parts, padding for comparisons, the threestudio minimum."""
from congeal.common.versions import MIN_THREESTUDIO, at_least, version_tuple


def test_version_tuple():
    assert version_tuple("2.0.0rc1+cu118") == (2, 0, 0)
    assert version_tuple("0.26") == (0, 26)
    assert version_tuple(None) == ()


def test_versions_compare_with_missing_parts_as_zero():
    assert version_tuple("2.0", width=3) == (2, 0, 0) and version_tuple("0.2.3.dev1", width=3) == (0, 2, 3)
    assert at_least("0.2", MIN_THREESTUDIO) and at_least("1.0.0rc1", MIN_THREESTUDIO)
    assert at_least("0.2.3", MIN_THREESTUDIO) and not at_least("0.1.9", MIN_THREESTUDIO)
    assert not at_least(None, MIN_THREESTUDIO) and not at_least("dev", MIN_THREESTUDIO)
    assert at_least("0.26.2", (0, 26)) and not at_least("0.19.3", (0, 20))
