"""congeal.synthetic.benchmark_sets: the named sets, their seeds and targets, and writing a set's collection."""
import json

import pytest

from congeal.common.errors import InputError
from congeal.synthetic import benchmark_sets
from congeal.synthetic.benchmark_sets import (BENCHMARK_SETS, HELD_OUT_SEEDS, TARGETS, TUNING_SEEDS, collection_seed,
                                              get_set, set_folder, write_benchmark_set)
from congeal.synthetic.catalogue import FAMILY_NAMES
from congeal.synthetic.generator import MODES
from congeal.synthetic.photo_framing import FRAMINGS


def test_sets_cover_the_issue():
    names = [spec.name for spec in BENCHMARK_SETS]
    assert len(set(names)) == len(names)
    for spec in BENCHMARK_SETS:
        assert spec.family in FAMILY_NAMES and spec.mode in MODES and spec.framing in FRAMINGS
        assert spec.category in TARGETS and spec.targets is TARGETS[spec.category]
        assert ((spec.mode == "cross") == spec.category.startswith("cross")
                and (spec.strength > 0) == (spec.mode == "cross"))
        assert (spec.conditions == "wild") == spec.category.endswith("-wild")
    # Off-centre non-square photos, ±30 % deformation, three procedural families and a real mesh; every family also
    # under wild conditions (issue 34: any light, clutter, JPEG, a segmenter's masks)
    assert {spec.framing for spec in BENCHMARK_SETS} == {"centred", "offcentre43", "offcentre34", "wild43"}
    assert {spec.family for spec in BENCHMARK_SETS if spec.conditions == "wild"} == {"creature", "chair", "teapot", "spot"}
    assert {spec.strength for spec in BENCHMARK_SETS if spec.mode == "cross"} == {0.2, 0.3}
    assert {spec.family for spec in BENCHMARK_SETS} == {"creature", "chair", "teapot", "spot"}
    assert {spec.category for spec in BENCHMARK_SETS} == set(TARGETS)
    assert not set(TUNING_SEEDS) & set(HELD_OUT_SEEDS)
    assert get_set("chair-cross30-centred").describe() == "chair, cross-instance ±30 %, centred square"
    with pytest.raises(InputError, match="benchmark set"):
        get_set("nope")


def test_collection_seeds_are_stable_and_distinct():
    seeds = {collection_seed(spec.name, k) for spec in BENCHMARK_SETS for k in TUNING_SEEDS + HELD_OUT_SEEDS}
    assert len(seeds) == len(BENCHMARK_SETS) * (len(TUNING_SEEDS) + len(HELD_OUT_SEEDS))
    assert collection_seed("creature-same-centred", 2) == 2643237480  # CRC-32: the same on every machine
    assert not seeds & set(range(100))  # none is a `congeal synth --seed k` the project was tuned on


def test_write_a_set_and_reuse_it(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark_sets, "N_IMAGES", 1)
    folder = write_benchmark_set("teapot-same-offcentre34", 3, tmp_path)
    assert folder == set_folder(tmp_path, "teapot-same-offcentre34", 3)
    assert folder == tmp_path / "teapot-same-offcentre34" / "seed3"
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert truth["benchmark"]["set"] == "teapot-same-offcentre34" and truth["benchmark"]["seed"] == 3
    assert truth["seed"] == collection_seed("teapot-same-offcentre34", 3) == truth["benchmark"]["collection_seed"]
    assert truth["family"] == "teapot" and truth["framing"] == "offcentre34" and truth["mode"] == "same"
    assert (truth["images"][0]["width"], truth["images"][0]["height"]) == (144, 192)
    stamp = (folder / "images" / "img_000.png").stat().st_mtime_ns
    assert write_benchmark_set("teapot-same-offcentre34", 3, tmp_path) == folder  # same recipe: re-used
    assert (folder / "images" / "img_000.png").stat().st_mtime_ns == stamp
    # a collection an older generator drew (its recipe without this version) is drawn again, not re-used
    truth["benchmark"].pop("generator")
    (folder / "ground_truth.json").write_text(json.dumps(truth))
    write_benchmark_set("teapot-same-offcentre34", 3, tmp_path)
    rewritten = json.loads((folder / "ground_truth.json").read_text())
    assert rewritten["benchmark"]["generator"] == benchmark_sets.GENERATOR_VERSION


def test_spot_sets_need_a_mesh_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CONGEAL_SPOT_DIR", raising=False)
    with pytest.raises(InputError, match="CONGEAL_SPOT_DIR"):
        write_benchmark_set("spot-same-centred", 2, tmp_path)
    monkeypatch.setenv("CONGEAL_SPOT_DIR", str(tmp_path / "env"))
    assert benchmark_sets.spot_mesh_dir() == tmp_path / "env"
    assert benchmark_sets.spot_mesh_dir(tmp_path / "given") == tmp_path / "given"
    with pytest.raises(InputError, match="spot_triangulated.obj"):
        write_benchmark_set("spot-same-centred", 2, tmp_path / "sets")
