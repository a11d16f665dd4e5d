"""End-to-end agreement of FreD + DM at CPU scale: the official DM loop and fred_jax's, same
settings, each synthetic set trained on by the same evaluator; plus one set evaluated by both
evaluators (ours and the official ``evaluate_synset``).

    .venv/bin/python benchmarks/parity/e2e_dm.py --updates 200 --seeds 3 --epochs 300

Settings (both loops): CIFAR-10, budget 1 image per class, k=64 kept DCT coefficients per
channel -> 16 instances per class, EVR masks, DSA, ConvNet, coefficient lr 1e6 (unnormalised
DCT units) with momentum 0.5, 256 real images per class per update, ``--updates`` updates of the
synthetic set (the official ``--Iteration`` is ``updates - 1``: its loop updates at
``it = 0 .. Iteration``). Evaluation: ConvNet, ``--seeds`` seeds, ``--epochs`` epochs, DSA,
SGD lr 0.01 (momentum 0.9, wd 5e-4, x0.1 after half), batch 256. Our evaluator uses the same
key for every set (same initialisations, shuffles and augmentations across sets).

Steps (``--steps``, default all, in this order; each writes ``<workdir>/<step>.json`` or its
outputs, and a step whose output exists is skipped unless ``--force``, so steps can run as
separate processes and the table be assembled at the end):

- ``distill_ref``: official loop (``e2e_dm_ref.py distill`` under ``.venv-ref``);
- ``distill_ours``: ``python -m fred_jax.main`` (no evaluation inside);
- ``eval_ours_official``: our decoded set with the official evaluator (``.venv-ref``);
- ``eval_ours_ours`` / ``eval_ref_ours``: our / the official set with our evaluator;
- ``table``: prints set x evaluator -> mean +- std, the loss curves of both loops, the
  class-mask overlap, and writes ``benchmarks/parity/results/e2e_dm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
REF_PYTHON = os.path.join(ROOT, ".venv-ref", "bin", "python")
STEPS = ("distill_ref", "distill_ours", "eval_ours_official", "eval_ours_ours", "eval_ref_ours",
         "table")
ROWS = (("official DM set", "eval_ref_ours"), ("fred_jax DM set", "eval_ours_ours"),
        ("fred_jax DM set", "eval_ours_official"))


def run_logged(cmd: list[str], log: str) -> float:
    """Run ``cmd`` with stdout/stderr to ``log``; return its wall time; fail loudly."""
    print("$", " ".join(cmd), f"> {log}", flush=True)
    with harness.Stopwatch() as sw, open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc:
        raise SystemExit(f"error: exit {rc}: {' '.join(cmd)} (see {log})")
    return sw.wall


def ours_dir(a) -> str:
    return os.path.join(a.workdir, "ours")


def ours_set(a) -> tuple[np.ndarray, np.ndarray]:
    """Our final synthetic set decoded: (NHWC normalised images, labels)."""
    from fred_jax import synset

    syn, _ = synset.load(os.path.join(ours_dir(a), "synset_last.npz"))
    x, y = synset.flat(syn)
    return np.asarray(x, np.float32), np.asarray(y, np.int32)


def ours_decoded_npz(a) -> str:
    """Our set decoded into the .npz layout of ``e2e_dm_ref.py`` (for the official evaluator)."""
    path = os.path.join(a.workdir, "ours_decoded.npz")
    x, y = ours_set(a)
    np.savez(path, images=x, labels=y)
    return path


def step_distill_ref(a) -> None:
    out = os.path.join(a.workdir, "ref")
    if os.path.exists(os.path.join(out, "synset.npz")) and not a.force:
        return
    run_logged([REF_PYTHON, os.path.join(HERE, "e2e_dm_ref.py"), "distill", "--out", out,
                "--updates", str(a.updates), "--seed", str(a.seed)],
               os.path.join(a.workdir, "distill_ref.log"))


def step_distill_ours(a) -> None:
    out = ours_dir(a)
    if os.path.exists(os.path.join(out, "synset_last.npz")) and not a.force:
        return
    if a.force and os.path.isdir(out):
        import shutil

        shutil.rmtree(out)  # else fred_jax.main resumes from its checkpoint
    seconds = run_logged(
        [sys.executable, "-m", "fred_jax.main", "--config",
         os.path.join(ROOT, "configs", "cifar10_dm_ipc2.py"), "--workdir", out,
         "--config.ipc=1", f"--config.num_iterations={a.updates}", f"--config.seed={a.seed}",
         "--config.log_every=1", "--config.eval.every=0", "--config.eval.num_eval=0"],
        os.path.join(a.workdir, "distill_ours.log"))
    with open(os.path.join(out, "wall_seconds.json"), "w") as f:
        json.dump({"seconds": seconds}, f)


def step_eval_ours_official(a) -> None:
    out = os.path.join(a.workdir, "eval_ours_official.json")
    if os.path.exists(out) and not a.force:
        return
    run_logged([REF_PYTHON, os.path.join(HERE, "e2e_dm_ref.py"), "evaluate",
                "--npz", ours_decoded_npz(a), "--out", out, "--seeds", str(a.seeds),
                "--epochs", str(a.epochs), "--lr", str(a.lr)],
               os.path.join(a.workdir, "eval_ours_official.log"))


def evaluate_ours(a, x: np.ndarray, y: np.ndarray, out: str, what: str) -> None:
    """Our evaluator (``fred_jax.evaluate.evaluate_synset``) on ``(x, y)`` -> ``out`` JSON."""
    import jax

    from fred_jax import data, evaluate

    dataset = data.load("cifar10")
    with harness.Stopwatch() as sw:
        r = evaluate.evaluate_synset(jax.random.key(a.seed), x, y, dataset, models=("ConvNet",),
                                     epochs=a.epochs, lr=a.lr, num_eval=a.seeds, batch_size=256,
                                     dsa=True, progress=False)["ConvNet"]
    result = {"evaluator": "fred_jax.evaluate.evaluate_synset", "set": what,
              "accs": r["accs"], "mean": r["mean"], "std": r["std"], "seeds": a.seeds,
              "epochs": a.epochs, "lr": a.lr, "seconds": sw.wall,
              "conv_impl": r["conv_impl"], "num_train": r["num_train"]}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{what}, our evaluator: {r['mean']:.2f} +- {r['std']:.2f} % ({result['seconds']:.0f} s)")


def step_eval_ours_ours(a) -> None:
    out = os.path.join(a.workdir, "eval_ours_ours.json")
    if not os.path.exists(out) or a.force:
        evaluate_ours(a, *ours_set(a), out, "fred_jax DM set")


def step_eval_ref_ours(a) -> None:
    out = os.path.join(a.workdir, "eval_ref_ours.json")
    if not os.path.exists(out) or a.force:
        d = np.load(os.path.join(a.workdir, "ref", "synset.npz"))
        evaluate_ours(a, d["images"], d["labels"], out, "official DM set")


def read_json(path: str, key: str):
    """``json[key]`` of ``path``, or None when the file is not there."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get(key)


def loss_curves(a) -> dict:
    """Per-class mean DM loss at the official log points (``it`` = loss before update it+1):
    the official log vs our metrics.jsonl ``loss_per_class`` at step ``it + 1``."""
    ref = np.load(os.path.join(a.workdir, "ref", "synset.npz"))
    ours = {}
    with open(os.path.join(ours_dir(a), "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "loss_per_class" in row:
                ours[row["step"] - 1] = row["loss_per_class"]
    its = [int(i) for i in ref["loss_iters"]]
    return {"iteration": its, "official": [float(v) for v in ref["loss"]],
            "fred_jax": [ours.get(i) for i in its],
            "fred_jax_all": [ours[i] for i in sorted(ours)]}


def mask_overlap(a) -> list[int]:
    """Per class: kept frequencies (of 64) common to the official and our EVR masks (each built
    from its own random real images, so this measures agreement of the selection, not identity)."""
    from fred_jax import synset

    ref = np.load(os.path.join(a.workdir, "ref", "synset.npz"))["mask"]  # [C*n, H, W, ch]
    syn, _ = synset.load(os.path.join(ours_dir(a), "synset_last.npz"))
    ours = np.asarray(syn.indices)
    n = ref.shape[0] // ours.shape[0]
    out = []
    for c in range(ours.shape[0]):
        kept = set(np.flatnonzero(ref[c * n, :, :, 0].reshape(-1) > 0).tolist())
        out.append(len(kept & set(ours[c].tolist())))
    return out


def step_table(a) -> None:
    results = {}
    for _, step in ROWS:
        path = os.path.join(a.workdir, f"{step}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[step] = json.load(f)
    ref_npz = os.path.join(a.workdir, "ref", "synset.npz")
    distill = {"official": float(np.load(ref_npz)["seconds"]) if os.path.exists(ref_npz) else None,
               "fred_jax": read_json(os.path.join(ours_dir(a), "wall_seconds.json"), "seconds"),
               "fred_jax_loop": read_json(os.path.join(ours_dir(a), "results.json"),
                                          "wall_time_seconds")}
    have_both = os.path.exists(ref_npz) and os.path.exists(
        os.path.join(ours_dir(a), "synset_last.npz"))
    losses = loss_curves(a) if have_both else None
    overlap = mask_overlap(a) if have_both else None

    print(f"\nFreD + DM, CIFAR-10, 1 img/class (k=64, 16 inst/class), {a.updates} updates; "
          f"eval ConvNet, {a.seeds} seeds x {a.epochs} epochs, DSA, lr {a.lr}; "
          f"CPU: {harness.cpu_model()}")
    nan = float("nan")
    print(f"distillation wall time (shared 2-core CPU): official main() "
          f"{distill['official'] or nan:.0f} s (data + masks + loop); fred_jax process "
          f"{distill['fred_jax'] or nan:.0f} s, loop {distill['fred_jax_loop'] or nan:.0f} s")
    print(f"{'set':<18} {'evaluator':<10} {'mean +- std (%)':>17}  per seed (%)          wall")
    for name, step in ROWS:
        r = results.get(step)
        who = "official" if step.endswith("official") else "fred_jax"
        if r is None:
            print(f"{name:<18} {who:<10} {'(not run)':>17}")
            continue
        accs = " ".join(f"{v:.2f}" for v in r["accs"])
        print(f"{name:<18} {who:<10} {r['mean']:>8.2f} +- {r['std']:<5.2f}  {accs:<20} "
              f"{r['seconds']:6.0f} s")
    if losses:
        print("per-class DM loss (official log; fred_jax metrics.jsonl loss_per_class):")
        for i, lo, lj in zip(losses["iteration"], losses["official"], losses["fred_jax"]):
            ours = "-" if lj is None else f"{lj:9.4f}"
            print(f"  it {i:4d}: official {lo:9.4f}   fred_jax {ours}")
        print(f"EVR mask overlap per class (of 64 kept frequencies): {overlap}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "e2e_dm.json")
    with open(out, "w") as f:
        json.dump({"settings": {"dataset": "cifar10", "ipc": 1, "k": 64, "instances_per_class": 16,
                                "updates": a.updates, "official_Iteration": a.updates - 1,
                                "lr_freq": 1e6, "momentum": 0.5, "batch_real": 256, "dsa": True,
                                "model": "ConvNet", "eval_seeds": a.seeds,
                                "eval_epochs": a.epochs, "eval_lr": a.lr, "seed": a.seed},
                   "cpu": harness.cpu_model(), "distill_seconds": distill, "results": results,
                   "loss_per_class": losses, "mask_overlap": overlap}, f, indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=200, help="synthetic-set updates of each loop")
    p.add_argument("--seeds", type=int, default=3, help="evaluation seeds")
    p.add_argument("--epochs", type=int, default=300, help="evaluation epochs")
    p.add_argument("--lr", type=float, default=0.01, help="evaluation learning rate")
    p.add_argument("--seed", type=int, default=0, help="distillation / our evaluator seed")
    p.add_argument("--workdir", default="/tmp/e2e")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {STEPS}")
    p.add_argument("--force", action="store_true", help="redo steps whose outputs exist")
    a = p.parse_args()
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        p.error(f"unknown steps {unknown}; choose from {STEPS}")
    if a.updates < 1 or a.seeds < 1 or a.epochs < 0:
        p.error("need --updates >= 1, --seeds >= 1, --epochs >= 0")
    os.environ.setdefault("FRED_DATA_DIR", "/work/shared/data")
    os.makedirs(a.workdir, exist_ok=True)
    for s in STEPS:
        if s in steps:
            globals()[f"step_{s}"](a)


if __name__ == "__main__":
    main()
