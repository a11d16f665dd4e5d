"""The parity harness: official FreD code (torch, ``.venv-ref``) against fred_jax on identical
inputs, piece by piece, with a printed table of every compared quantity.

    bash benchmarks/parity/setup_reference.sh            # once: .venv-ref with CPU torch
    .venv/bin/python benchmarks/parity/run.py            # regenerate goldens, compare, report
    .venv/bin/python benchmarks/parity/run.py --no-regenerate   # compare with the stored goldens

For each piece, ``ref_<piece>.py`` runs under ``.venv-ref`` and writes ``tests/golden/<piece>.npz``
(inputs + official outputs); then ``tests/test_parity_<piece>.py``'s ``rows()`` runs fred_jax on
the same inputs and returns the comparisons, which CI asserts without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TESTS = os.path.join(ROOT, "tests")


def pieces() -> list[str]:
    """Every piece with both a reference script and a golden test, in file order."""
    refs = sorted(f[4:-3] for f in os.listdir(HERE) if f.startswith("ref_") and f.endswith(".py"))
    return [p for p in refs if os.path.exists(os.path.join(TESTS, f"test_parity_{p}.py"))]


def regenerate(piece: str, python: str) -> None:
    t0 = time.time()
    subprocess.run([python, os.path.join(HERE, f"ref_{piece}.py")], check=True, cwd=ROOT)
    print(f"  [{piece}] reference ran in {time.time() - t0:.1f} s")


def rows(piece: str) -> list:
    sys.path.insert(0, TESTS)
    spec = importlib.util.spec_from_file_location(
        f"test_parity_{piece}", os.path.join(TESTS, f"test_parity_{piece}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.rows()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-regenerate", action="store_true",
                        help="compare with the stored golden files; do not run the reference")
    parser.add_argument("--python", default=os.path.join(ROOT, ".venv-ref", "bin", "python"),
                        help="the reference environment's python (default .venv-ref)")
    parser.add_argument("--pieces", default="", help="comma-separated subset (default all)")
    parser.add_argument("--out", default="", help="also write the report (Markdown) to this file, "
                        "e.g. benchmarks/parity/REPORT.md")
    args = parser.parse_args(argv)
    chosen = [p for p in pieces() if not args.pieces or p in args.pieces.split(",")]
    if not args.no_regenerate and not os.path.exists(args.python):
        print(f"error: no reference environment at {args.python}: run "
              "benchmarks/parity/setup_reference.sh (or pass --python)", file=sys.stderr)
        return 2
    table = []
    for piece in chosen:
        if not args.no_regenerate:
            regenerate(piece, args.python)
        table += rows(piece)
    bad = sum(not r.ok for r in table)
    report = "".join(
        ["| piece | quantity | error | tolerance | ok | note |\n|---|---|---|---|---|---|\n"]
        + [f"| {r.piece} | {r.quantity} | {r.err:.3g} | {r.tol:.3g} | "
           f"{'yes' if r.ok else 'NO'} | {r.note} |\n" for r in table]
        + [f"\n{len(table) - bad} of {len(table)} quantities within tolerance\n"])
    print("\n" + report)
    if args.out:
        source = ("stored goldens" if args.no_regenerate
                  else "goldens regenerated from the official code")
        flag = " --no-regenerate" if args.no_regenerate else ""
        head = (f"# Parity report\n\n{time.strftime('%Y-%m-%d %H:%M')}, commit {_commit()}, "
                f"{source}; `python benchmarks/parity/run.py{flag}`. Error: max |ours - "
                f"official| / max |official| (a count where noted).\n\n")
        with open(args.out, "w") as f:
            f.write(head + report)
        print(f"wrote {args.out}")
    return 1 if bad else 0


def _commit() -> str:
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
