"""A pytest plugin that records every test's wall and CPU seconds, to choose the slow list of tests/conftest.py.

    PYTHONPATH=scripts/ci CONGEAL_TEST_TIMES=times.jsonl .venv/bin/python -m pytest -p timing_plugin tests ...
    python3 scripts/ci/rank_durations.py times.jsonl          # the ranking and the fast target's idle estimate

One JSON line per test (appended as each finishes, so a cut-off run keeps what it measured): node id, module,
markers, outcome, `wall` seconds and `cpu` seconds (this process, all threads, plus the children it waited for;
setup + call + teardown). On a shared machine wall time says more about the neighbours than about the test; CPU time
is what the test itself costs, so an idle machine's wall time is estimated from it.
"""
import json
import os
import resource
import time

import pytest


# resolved once: tests may chdir before they finish
RECORDS = os.path.abspath(os.environ["CONGEAL_TEST_TIMES"]) if os.environ.get("CONGEAL_TEST_TIMES") else None


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    wall, cpu = time.perf_counter(), _cpu()
    outcome = {"value": "passed"}
    item.stash[_OUTCOME] = outcome
    yield
    if RECORDS:
        record = {"nodeid": item.nodeid, "module": item.nodeid.split("::")[0],
                  "markers": sorted({mark.name for mark in item.iter_markers()}), "outcome": outcome["value"],
                  "wall": round(time.perf_counter() - wall, 3), "cpu": round(_cpu() - cpu, 3)}
        with open(RECORDS, "a") as out:
            out.write(json.dumps(record) + "\n")


_OUTCOME = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.outcome != "passed" and _OUTCOME in item.stash:
        item.stash[_OUTCOME]["value"] = report.outcome
