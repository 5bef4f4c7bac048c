"""congeal.synthetic.benchmark_runs: pooling seeds into set summaries, targets, the table; one tiny real run."""
import math

import pytest

from congeal.synthetic.benchmark_runs import markdown_table, meets, register_and_score, summarise


def _record(name, seed, errors, pck05, pck1, points, category="cross"):
    return {"set": name, "seed": seed, "category": category, "preset": "fast", "features": "rgb",
            "rotation_errors_deg": errors, "rotation_median_deg": float(sorted(errors)[len(errors) // 2]),
            "fovy_error_median_deg": 1.0, "n_points": points, "pck@0.05": pck05, "pck@0.1": pck1}


def test_summaries_pool_the_seeds_and_check_the_targets():
    records = [
        _record("creature-cross20-centred", 2, [1.0, 2.0, 3.0, 4.0], 0.5, 0.9, 10),
        _record("creature-cross20-centred", 3, [2.0, 3.0, 4.0, 178.0], 0.7, 0.8, 30),
        _record("chair-same-centred", 2, [0.5, 0.6, 0.7, 0.8], 0.95, 1.0, 20, category="same-centred"),
    ]
    cross, chair = summarise(records)
    assert cross["set"] == "creature-cross20-centred" and cross["seeds"] == [2, 3] and cross["n_photos"] == 8
    assert cross["rotation_median_deg"] == pytest.approx(3.0) and cross["rotation_max_deg"] == 178.0
    assert cross["pck@0.05"] == pytest.approx((0.5 * 10 + 0.7 * 30) / 40)  # pooled over points, not seeds
    assert cross["pck@0.1"] == pytest.approx((0.9 * 10 + 0.8 * 30) / 40)
    # records without per-photo statuses (older results): every photo counts as unflagged
    assert cross["unflagged_max_deg"] == 178.0
    assert cross["targets"] == {"rotation_median_deg": True, "unflagged_max_deg": False, "pck@0.1": False}
    assert not cross["all_targets_met"]
    assert chair["all_targets_met"] and meets(chair) == chair["targets"]
    table = markdown_table([cross, chair]).splitlines()
    assert len(table) == 4 and table[0].startswith("| set |")
    assert "178.0 ✗" in table[2] and "missed" in table[2] and table[3].endswith("| met |")


def test_summaries_pool_what_a_perfect_choice_would_give():
    """`rotation_errors_oracle_deg` (each photo's hypothesis nearest the truth) pools like the chosen errors; records
    without it (results files written before it existed) leave it out of the summary."""
    first = dict(_record("teapot-cross30-centred", 2, [176.0, 3.0], 1.0, 1.0, 4), rotation_errors_oracle_deg=[6.0, 3.0])
    second = dict(_record("teapot-cross30-centred", 3, [4.0, 40.0], 1.0, 1.0, 4), rotation_errors_oracle_deg=[4.0, 8.0])
    (summary,) = summarise([first, second])
    assert summary["rotation_median_oracle_deg"] == pytest.approx(5.0) and summary["rotation_max_oracle_deg"] == 8.0
    assert summary["rotation_max_deg"] == 176.0
    (old,) = summarise([_record("teapot-cross30-centred", 2, [176.0, 3.0], 1.0, 1.0, 4)])
    assert "rotation_median_oracle_deg" not in old


def test_an_unregistered_photo_makes_the_max_infinite():
    (summary,) = summarise([_record("creature-cross20-centred", 2, [1.0, float("nan")], 1.0, 1.0, 4)])
    assert math.isinf(summary["rotation_max_deg"]) and not summary["targets"]["unflagged_max_deg"]


@pytest.mark.slow
def test_register_and_score_a_tiny_collection(tmp_path):
    """The harness end to end on 2 photos, with a small search so it runs in seconds (accuracy is not the point)."""
    from congeal.synthetic.family_collection import make_family_collection

    collection = make_family_collection(tmp_path / "c", "creature", mode="same", framing="offcentre43", n_images=2,
                                        image_size=64, resolution=24, seed=1)
    scored = register_and_score(collection, tmp_path / "run", preset="fast",
                                overrides=["grid.n_azimuth=4", "grid.n_elevation=2", "refine.steps=5",
                                           "mapping.steps=5"])
    assert len(scored["rotation_errors_deg"]) == 2 and all(0 <= e <= 180 for e in scored["rotation_errors_deg"])
    assert scored["rotation_max_deg"] == max(scored["rotation_errors_deg"])
    assert scored["n_points"] > 0  # keypoints both photos see were transferred
    assert 0.0 <= scored["pck@0.05"] <= scored["pck@0.1"] <= 1.0
    assert (tmp_path / "run" / "poses.json").is_file() and scored["seconds"] > 0
    # the joint choice's effect: photos it overruled and what each photo alone would have chosen
    assert 0 <= scored["overruled"] <= 2 and 0 <= scored["undecided"] <= 2
    assert len(scored["rotation_errors_alone_deg"]) == 2
    if scored["overruled"] == 0:
        assert sorted(scored["rotation_errors_alone_deg"]) == pytest.approx(sorted(scored["rotation_errors_deg"]))
    # a perfect choice among each photo's hypotheses: never worse than the chosen one or the photo's own best
    oracle = scored["rotation_errors_oracle_deg"]
    assert len(oracle) == 2
    assert all(o <= a + 1e-9 for o, a in zip(oracle, scored["rotation_errors_alone_deg"]))
    assert sorted(oracle)[0] <= sorted(scored["rotation_errors_deg"])[0] + 1e-9
    assert sum(oracle) <= sum(scored["rotation_errors_deg"]) + 1e-9
