"""A pytest plugin that records every relative error the golden tests compute, to show that a change moved no
number: run it before and after, and compare the two files.

    GOLDEN_RECORD=before.json PYTHONPATH=tools python -m pytest -q -p golden_recorder tests/test_golden.py ...
    (change the code, then the same with after.json; python tools/golden_recorder.py before.json after.json)

Every test module that defines ``rel_err(a, b)`` (the golden tests do) has it wrapped; each value it returns is
kept under the test's name (test function + parameters, so a moved test file still matches).
"""
from __future__ import annotations

import json
import os
import sys

import pytest

RECORDS: dict[str, list[float]] = {}
_current: list[str | None] = [None]


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        mod = item.module
        if hasattr(mod, "rel_err") and not getattr(mod.rel_err, "_recorded", False):
            def recorded(a, b, _orig=mod.rel_err):
                value = float(_orig(a, b))
                RECORDS.setdefault(_current[0], []).append(value)
                return value
            recorded._recorded = True
            mod.rel_err = recorded


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _current[0] = item.name
    yield


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("GOLDEN_RECORD")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(RECORDS, f, indent=1, sort_keys=True)


def compare(before: str, after: str) -> int:
    """Print how many tests and values each file holds and every test whose values differ; 1 if any does."""
    b, a = (json.load(open(p, encoding="utf-8")) for p in (before, after))
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    print(f"{len(b)} tests / {sum(map(len, b.values()))} values before, {len(a)} / {sum(map(len, a.values()))} after; "
          f"{len(differ)} differ" + (f": {', '.join(differ)}" if differ else " (bit-identical)"))
    if a:
        print(f"largest error after: {max(max(v) for v in a.values() if v):.3g}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(compare(*sys.argv[1:3]))
