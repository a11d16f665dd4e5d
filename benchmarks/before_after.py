"""Before / after: the DM, TM and evaluation benchmarks of a base commit and of this tree,
alternately, same Python environment; a table of medians and ratios.

    python benchmarks/before_after.py 1f0a22e                      # the real comparison
    python benchmarks/before_after.py 1f0a22e --reps 1 --dm_iterations 1 --tm_syn_steps 2 \\
        --tm_iters 1 --eval_epochs 1 --eval_seeds 1                # a smoke run

The base commit's files are extracted with ``git archive <commit> | tar -x`` into a temporary
folder (no change to the repository's git state, no worktree). Each repetition runs, for each
workload, the base tree's benchmark script against the base library and this tree's script
against this tree's library (``PYTHONPATH`` set to the tree, working directory the tree; the
interpreter is this one), in fresh processes, the order flipping every repetition:

- ``dm``: ``benchmarks/step_time.py --objectives dm`` (one DM iteration, CIFAR-10 shapes);
- ``tm``: ``benchmarks/step_time_tm.py --syn_steps S`` (one TM iteration, im2col, pieces of 20);
- ``eval``: ``benchmarks/evaluate.py`` (one evaluation epoch per seed count, test pass).

Their flags and printed figures are the same in both trees (the harness keeps them), so one
parser reads both. The table shows, per figure, the median over repetitions of each side and
after / before; ``loss`` rows (DM and TM, after the timed iterations from the same seeds)
must agree when the computation is unchanged. Recorded with ``benchmarks/harness.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import harness

EVAL_LINE = re.compile(r"seeds=(\d+): compile\+first epoch ([\d.]+) s, ([\d.]+) epochs/s .*?"
                       r"test (\d+) images/s")


def extract(commit: str, dest: str) -> str:
    """``git archive <commit> | tar -x -C dest``; returns the full commit hash."""
    full = subprocess.run(["git", "-C", harness.ROOT, "rev-parse", "--verify",
                           f"{commit}^{{commit}}"], capture_output=True, text=True)
    if full.returncode:
        raise SystemExit(f"error: unknown commit {commit!r}: {full.stderr.strip()}")
    archive = subprocess.Popen(["git", "-C", harness.ROOT, "archive", full.stdout.strip()],
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait():
        raise SystemExit(f"error: git archive {commit} failed")
    return full.stdout.strip()


def commands(a: argparse.Namespace, out_json: str) -> dict[str, list[str]]:
    """Workload -> script arguments (the same in both trees)."""
    return {
        "dm": ["benchmarks/step_time.py", "--objectives", "dm", "--iterations",
               str(a.dm_iterations), "--out", out_json],
        "tm": ["benchmarks/step_time_tm.py", "--syn_steps", str(a.tm_syn_steps), "--iters",
               str(a.tm_iters), "--warmup", "1", "--conv_impl", "im2col", "--grad_chunk", "20"],
        "eval": ["benchmarks/evaluate.py", "--epochs", str(a.eval_epochs), "--seeds",
                 a.eval_seeds, "--num_test", str(a.num_test)],
    }


def parse(workload: str, stdout: str, out_json: str, num_test: int) -> dict[str, float]:
    """The figures of one run (seconds unless named otherwise)."""
    if workload == "dm":
        with open(out_json) as f:
            r = json.load(f)[0]
        return {"step_s": r["ms_per_iteration_median"] / 1e3,
                "cpu_s": r["cpu_ms_per_iteration_median"] / 1e3,
                "compile_s": r["compile_seconds"], "loss": r["loss"]}
    if workload == "tm":
        r = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")][-1]
        return {"step_s": r["wall_s"], "cpu_s": r["cpu_s"], "compile_s": r["compile_s"],
                "peak_rss_mb": r["peak_rss_mb"], "loss": r["loss"]}
    out = {}
    test_images = 256 * max(1, num_test // 256)
    for seeds, compile_s, eps, ips in EVAL_LINE.findall(stdout):
        out[f"epoch_{seeds}seed_s"] = 1 / float(eps)
        out[f"compile_{seeds}seed_s"] = float(compile_s)
        out[f"test_pass_{seeds}seed_s"] = test_images / float(ips)
    if not out:
        raise ValueError("no evaluation lines in the output")
    return out


def run_one(tree: str, argv: list[str], results: str) -> str:
    """Run one benchmark script of ``tree`` against ``tree``'s library; its stdout."""
    env = {**os.environ, "PYTHONPATH": tree, harness.RESULTS_ENV: results}
    proc = subprocess.run([sys.executable, *argv], cwd=tree, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"error: {' '.join(argv)} in {tree} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="base commit (e.g. 1f0a22e)")
    p.add_argument("--reps", type=int, default=3, help="alternated repetitions")
    p.add_argument("--workloads", default="dm,tm,eval", help="subset of dm,tm,eval")
    p.add_argument("--dm_iterations", type=int, default=5, help="timed DM iterations per run")
    p.add_argument("--tm_syn_steps", type=int, default=10)
    p.add_argument("--tm_iters", type=int, default=2, help="timed TM iterations per run")
    p.add_argument("--eval_epochs", type=int, default=10, help="timed epochs per run")
    p.add_argument("--eval_seeds", default="1,5", help="comma-separated seed counts")
    p.add_argument("--num_test", type=int, default=2048, help="test-pass images")
    p.add_argument("--keep", action="store_true", help="keep the extracted base tree")
    a = p.parse_args(argv)
    workloads = [w for w in a.workloads.split(",") if w]
    if set(workloads) - {"dm", "tm", "eval"} or a.reps < 1:
        p.error("--workloads must be a subset of dm,tm,eval and --reps >= 1")

    tmp = tempfile.mkdtemp(prefix="before_after_")
    base_tree = os.path.join(tmp, "base")
    os.makedirs(base_tree)
    full = extract(a.base, base_tree)
    trees = {"before": base_tree, "after": harness.ROOT}
    head = harness.git_commit()
    print(f"before: {full[:10]} (extracted to {base_tree}); after: this tree "
          f"({harness.commit_cell(head)}); {a.reps} alternated repetitions", flush=True)
    samples: dict[str, dict[str, dict[str, list[float]]]] = {w: {"before": {}, "after": {}}
                                                            for w in workloads}
    settings = {k: getattr(a, k) for k in ("base", "reps", "dm_iterations", "tm_syn_steps",
                                           "tm_iters", "eval_epochs", "eval_seeds", "num_test")}
    try:
        with harness.Record("before_after", settings=settings,
                            note=f"before = {full[:10]}, after = this tree") as record:
            for rep in range(a.reps):
                sides = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
                for w in workloads:
                    for side in sides:
                        out_json = os.path.join(tmp, f"{side}_{w}_{rep}.json")
                        cmd = commands(a, out_json)[w]
                        load = harness.load_average()
                        stdout = run_one(trees[side], cmd, os.path.join(tmp, f"results_{side}"))
                        figures = parse(w, stdout, out_json, a.num_test)
                        for k, v in figures.items():
                            samples[w][side].setdefault(k, []).append(v)
                        print(f"rep {rep + 1} {w:<4} {side:<6} load {load:4.1f}: "
                              + ", ".join(f"{k} {_num(k, v)}" for k, v in figures.items()),
                              flush=True)
            rows = table_rows(samples)
            for r in rows:
                record.add(r)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'workload':<8} {'figure':<20} {'before':>16} {'after':>16} {'after/before':>12}")
    for r in rows:
        print(f"{r['workload']:<8} {r['figure']:<20} {_num(r['figure'], r['before']):>16} "
              f"{_num(r['figure'], r['after']):>16} {r['ratio']:>11.4f}x")
    return 0


def _num(figure: str, value: float) -> str:
    """Losses with all the digits a float32 has (they must agree), other figures with 4."""
    return f"{value:.9g}" if figure == "loss" else f"{value:.4g}"


def table_rows(samples: dict) -> list[dict]:
    """One row per (workload, figure): medians of both sides and their ratio."""
    rows = []
    for w, sides in samples.items():
        for k in sides["before"]:
            if k not in sides["after"]:
                continue
            before = harness.quartiles(sides["before"][k])[1]
            after = harness.quartiles(sides["after"][k])[1]
            rows.append({"workload": w, "figure": k, "before": before, "after": after,
                         "ratio": after / before if before else float("nan"),
                         "before_all": sides["before"][k], "after_all": sides["after"][k]})
    return rows


if __name__ == "__main__":
    sys.exit(main())
