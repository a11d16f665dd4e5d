"""benchmarks/harness.py: statistics, records, and the results table kept in sync with its JSONL."""

import json
import os
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import harness  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_quartiles_match_numpy(n):
    xs = list(np.random.default_rng(n).normal(size=n))
    np.testing.assert_allclose(harness.quartiles(xs), np.percentile(xs, [25, 50, 75]))


def test_timeit_separates_the_first_call():
    calls = []
    t = harness.timeit(lambda i: calls.append(i), repeats=3, warmup=2)
    assert calls == [0, 1, 2, 3, 4, 5]
    assert len(t.wall) == len(t.cpu) == 3 and t.compile_s is not None
    assert harness.timeit(lambda i: None, 2, first_is_compile=False).compile_s is None
    figures = t.figures(unit="ms", prefix="x_")
    assert figures["x_reps"] == 3 and figures["x_wall_median_ms"] == pytest.approx(1e3 * t.median)


def test_record_appends_a_line_and_regenerates_the_table(tmp_path):
    with harness.Record("demo", settings={"n": 2}, directory=str(tmp_path),
                        command="python benchmarks/demo.py --n 2") as rec:
        rec.add(case="a", wall_median_s=1.23456)
        rec.add({"case": "b"}, wall_median_s=0.5)
    with pytest.raises(RuntimeError), harness.Record("demo", directory=str(tmp_path)) as rec:
        rec.add(case="lost")
        raise RuntimeError  # a failed run records nothing
    [entry] = harness.read(str(tmp_path))["demo"]
    assert entry["rows"] == [{"case": "a", "wall_median_s": 1.23456},
                             {"case": "b", "wall_median_s": 0.5}]
    assert entry["machine"]["cpu"] and entry["machine"]["cores"] >= 1
    assert entry["settings"] == {"n": 2} and "load_before" in entry
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## demo" in text and "`python benchmarks/demo.py --n 2`; n=2" in text
    assert "| a | 1.235 |" in text and "| b | 0.5 |" in text


def test_committed_results_table_matches_its_jsonl(tmp_path):
    """benchmarks/RESULTS.md is generated: regenerating it from benchmarks/results changes
    nothing (rerun `python benchmarks/harness.py` after adding a record)."""
    directory = os.path.join(BENCH, "results")
    out = harness.write_results_md(directory, out=str(tmp_path / "RESULTS.md"))
    with open(out) as f, open(os.path.join(BENCH, "RESULTS.md")) as g:
        assert f.read() == g.read()
    side = harness.read(directory)["side_by_side"][0]  # the table measured before the harness
    assert side["imported"] and {r["work"]: r["ratio"] for r in side["rows"]} == {
        "eval_epoch_1seed": 0.91, "eval_epoch_5seeds": 0.96, "test_pass": 0.98,
        "dm_iteration": 0.51}
    for name, entries in harness.read(directory).items():
        for e in entries:
            assert e["benchmark"] == name and e["rows"] and json.dumps(e)


def test_side_by_side_readme_block_is_the_last_recorded_run(tmp_path):
    """The README's side-by-side table is the one `side_by_side.py` writes from its last
    recorded run (followed by the works it did not run, from earlier runs); rewriting a file
    touches only the text between the markers, and a file without them is refused."""
    import side_by_side

    runs = harness.read(os.path.join(BENCH, "results"))["side_by_side"]
    entry = runs[-1]
    table = side_by_side.readme_table(entry, runs[:-1])  # works it did not run: earlier runs'
    assert f"| {entry['rows'][0]['work']} | " in table and "x |" in table
    with open(os.path.join(os.path.dirname(BENCH), "README.md")) as f:
        readme = f.read()
    start, end = (readme.index(m) for m in side_by_side.MARKERS)
    assert readme[start + len(side_by_side.MARKERS[0]):end] == "\n" + table

    path = tmp_path / "README.md"
    path.write_text(f"before\n{side_by_side.MARKERS[0]}\nold\n{side_by_side.MARKERS[1]}\nafter\n")
    side_by_side.write_readme(entry, str(path), runs[:-1])
    assert path.read_text() == (f"before\n{side_by_side.MARKERS[0]}\n{table}"
                                f"{side_by_side.MARKERS[1]}\nafter\n")
    path.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- side_by_side:start -->"):
        side_by_side.write_readme(entry, str(path))
