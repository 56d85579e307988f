"""The committed benchmark results are whole, agree with their own figures, and are what
docs/performance.md shows. (Nothing is timed here: the benchmarks themselves run with
`make bench`.)"""

import pytest

from bench import report
from bench.run_all import BENCHMARKS

RESULTS = report.load_results()


@pytest.mark.parametrize("name", BENCHMARKS)
def test_result_file_has_the_agreed_shape(name):
    doc = RESULTS[name]
    assert doc["name"] == name
    assert doc["quick"] is False, "a --quick smoke run must not be committed as the result"
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0 and machine["cpu_model"]
    assert doc["measured"] and doc["targets"] and doc["checks"]
    assert doc["code"]["commit"], "a result names the commit it measured"
    assert doc["code"]["uncommitted_changes_in"] == [], (
        "measured with uncommitted changes in pipeline/ or exporter/: not reproducible")
    assert doc["met"] == all(doc["checks"].values())


def test_throughput_reports_the_ratio_and_both_sides_memory():
    m = RESULTS["throughput"]["measured"]
    assert m["ratio"] > 0
    assert {"daemon", "bare"} <= set(m["peak_rss_bytes"])


@pytest.mark.parametrize("row", [r for r in report.ROWS if r.check], ids=lambda r: r.check)
def test_verdict_agrees_with_the_figures(row):
    doc = RESULTS[row.bench]
    assert row.met(doc["measured"], doc["targets"]) == doc["checks"][row.check]


def test_every_check_has_a_row_in_the_table():
    for name in BENCHMARKS:
        rows = {r.check for r in report.ROWS if r.bench == name}
        assert set(RESULTS[name]["checks"]) <= rows, name

# That docs/performance.md shows this table: tests/unit/test_generated.py.
