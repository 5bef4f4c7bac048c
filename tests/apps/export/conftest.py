"""Fixtures of the export tests: a finished run with one photo the run calls failed, and its export in every format.

`flagged_run` is a copy of the shared synthetic run (`synthetic_run("same")`) whose poses.json marks one photo
`failed` and one `undecided` (what registration's trust stage writes); `exported` is `congeal export --format all`
of it, made once per session.
"""
import json
import shutil
from pathlib import Path
from typing import Any, Dict, NamedTuple

import pytest

FAILED_REASON = "test: the silhouette IoU is 0.31"


class FlaggedRun(NamedTuple):
    run: Path
    collection: Path
    failed: str
    undecided: str


class Exported(NamedTuple):
    run: FlaggedRun
    out: Path
    summary: Dict[str, Any]


@pytest.fixture(scope="session")
def flagged_run(synthetic_run, tmp_path_factory) -> FlaggedRun:
    collection, source = synthetic_run("same")
    run = tmp_path_factory.mktemp("flagged") / "run"
    shutil.copytree(source, run, ignore=shutil.ignore_patterns("cache", "pictures"))
    doc = json.loads((run / "poses.json").read_text())
    entries = doc["images"]
    failed, undecided = entries[1]["name"], entries[2]["name"]
    entries[1].update(status="failed", status_reason=FAILED_REASON)
    entries[2].update(status="undecided", status_reason="test: two readings")
    (run / "poses.json").write_text(json.dumps(doc))
    return FlaggedRun(run, collection, failed, undecided)


@pytest.fixture(scope="session")
def exported(flagged_run, tmp_path_factory) -> Exported:
    from congeal.apps.export.run_export import export_run

    out = tmp_path_factory.mktemp("export") / "out"
    summary = export_run(flagged_run.run, ["all"], out)
    return Exported(flagged_run, out, summary)
