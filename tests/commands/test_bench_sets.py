"""`congeal bench-sets`: list, write, table, and run's handling of a missing mesh."""
import argparse
import io
import json

from congeal.commands import bench_sets
from congeal.synthetic import benchmark_sets


def _run(argv):
    parser = argparse.ArgumentParser()
    bench_sets.add_arguments(parser)
    printed = io.StringIO()
    assert bench_sets.run(parser.parse_args(argv), out=printed) == 0
    return printed.getvalue()


def test_list():
    text = _run(["list"])
    assert "held-out seeds [2, 3, 4]" in text and "tuning seeds [0, 1]" in text
    for spec in benchmark_sets.BENCHMARK_SETS:
        assert spec.name in text
    assert "unflagged_max_deg <= 30" in text and "cross-wild" in text


def test_write(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark_sets, "N_IMAGES", 1)
    text = _run(["write", str(tmp_path), "--set", "chair-same-centred", "--seed", "1"])
    assert "chair-same-centred" in text
    truth = json.loads((tmp_path / "chair-same-centred" / "seed1" / "ground_truth.json").read_text())
    assert truth["benchmark"]["set"] == "chair-same-centred" and len(truth["images"]) == 1


def test_table_keeps_the_latest_record_of_each_run(tmp_path):
    def record(seed, errors):
        return {"kind": "run", "set": "chair-cross30-centred", "seed": seed, "category": "cross", "preset": "fast",
                "features": "rgb", "rotation_errors_deg": errors, "rotation_median_deg": errors[0],
                "fovy_error_median_deg": 1.0, "n_points": 10, "pck@0.05": 0.5, "pck@0.1": 0.9}

    lines = [record(2, [90.0]), record(2, [2.0]), record(3, [4.0]), {"kind": "set", "set": "ignored"}]
    results = tmp_path / "results-fast-rgb.jsonl"
    results.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    text = _run(["table", str(results)])
    summary = json.loads(text.splitlines()[0])
    assert summary["kind"] == "set" and summary["seeds"] == [2, 3] and summary["rotation_max_deg"] == 4.0
    assert "| chair-cross30-centred | cross | fast | 2,3 |" in text


def test_run_skips_spot_without_its_files(tmp_path):
    text = _run(["run", str(tmp_path / "out"), "--sets", "spot-same-centred", "--mesh-dir", str(tmp_path)])
    assert "skipping spot-same-centred" in text and "common-3d-test-models" in text
    assert (tmp_path / "out" / "results-fast-rgb.md").is_file()
