"""End-to-end agreement of FreD + TM at CPU scale: one official expert buffer read by the
official TM loop and by fred_jax's; both synthetic sets trained on by both evaluators; and our
expert training against the official ``buffer.py`` (per-epoch test accuracy).

    .venv/bin/python benchmarks/parity/e2e_tm.py --workdir runs/e2e_tm   # the README's run

Settings: CIFAR-10 restricted to a fixed class-balanced subset (the first ``--per_class``
training images of each class, for the experts and both loops' initialisations; every test
accuracy on the first ``--test_per_class`` test images of each class), ``ConvNetW32`` (the
official ConvNet at width 32, for the CPU), budget 1 image per class, ``--k`` kept DCT
coefficients per channel (official 64 -> 16 instances per class), EVR masks, DSA. Experts: official
``buffer.py`` settings (SGD lr 0.01, no momentum, no weight decay, DSA, batch 256),
``--experts`` experts x ``--expert_epochs_trained`` epochs (at least max_start_epoch +
expert_epochs = 7). TM, both loops: the official CIFAR-10 ipc 1 values
(expert_epochs 2, max_start_epoch 5, lr_freq 1e8 with momentum 0.5, lr_teacher 0.01, lr_lr
1e-7, the whole set per student step) except ``--syn_steps`` (default 10, official 50),
``--iterations`` updates (defaults: the measured run). Evaluation: ``ConvNetW32``, ``--seeds``
seeds x ``--epochs`` epochs, DSA, lr = the set's learned ``syn_lr`` (as the official TM
evaluation), momentum 0.9, wd 5e-4, x0.1 after half.

Steps (``--steps``, default all, in this order; each writes its output under ``--workdir`` and
is skipped when that exists, unless ``--force``):

- ``buffer_ref``: official ``buffer.py`` (``e2e_tm_ref.py buffer`` under ``.venv-ref``);
- ``import_ref``: our reader of official buffers (:mod:`fred_jax.official_buffers`) puts them in
  our expert store;
- ``experts_ours``: :func:`fred_jax.experts.train_experts`, same subset and settings;
- ``expert_acc``: test accuracy of every saved epoch of both sets of experts, with our network
  (same forward pass for both);
- ``distill_ref``: official ``main_TM_FreD.main`` (``e2e_tm_ref.py distill``);
- ``distill_ours``: ``fred_jax.train.run`` (what ``python -m fred_jax.main`` runs) with
  ``configs/cifar10_ipc1.py`` and the overrides above on the subset, reading the imported
  official experts (no evaluation inside), in a fresh process;
- ``eval_ref_official`` / ``eval_ours_official``: each set with the official evaluator;
- ``eval_ref_ours`` / ``eval_ours_ours``: each set with our evaluator (same key for both);
- ``table``: the 2x2 table, the expert comparison, the loss-curve figure
  (``benchmarks/figures/e2e_tm_loss.png``) and ``benchmarks/parity/results/e2e_tm.json``.
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
REF_SCRIPT = os.path.join(HERE, "e2e_tm_ref.py")


def ref(a, *args: str) -> list[str]:
    """The command line of ``e2e_tm_ref.py <args>`` under ``.venv-ref``."""
    return [REF_PYTHON, REF_SCRIPT, "--threads", str(a.ref_threads), *args]
MODEL = "ConvNetW32"
STEPS = ("buffer_ref", "import_ref", "experts_ours", "expert_acc", "distill_ref",
         "distill_ours", "eval_ref_official", "eval_ours_official", "eval_ref_ours",
         "eval_ours_ours", "table")
ROWS = (("official TM set", "official", "eval_ref_official"),
        ("official TM set", "fred_jax", "eval_ref_ours"),
        ("fred_jax TM set", "official", "eval_ours_official"),
        ("fred_jax TM set", "fred_jax", "eval_ours_ours"))


def run_logged(cmd: list[str], log: str) -> float:
    """Run ``cmd`` with stdout/stderr to ``log``; return its wall time; fail loudly."""
    print("$", " ".join(cmd), f"> {log}", flush=True)
    with harness.Stopwatch() as sw, open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    if rc:
        raise SystemExit(f"error: exit {rc}: {' '.join(cmd)} (see {log})")
    return sw.wall


def path(a, *parts) -> str:
    return os.path.join(a.workdir, *parts)


def buffer_folder(a) -> str:
    return path(a, "buffers", "CIFAR10_NO_ZCA", MODEL)


def settings(a) -> dict:
    return {"dataset": "cifar10", "model": MODEL, "zca": False, "lr": 0.01, "momentum": 0.0,
            "weight_decay": 0.0, "batch_size": 256, "dsa": True,
            "dsa_strategy": "color_crop_cutout_flip_scale_rotate"}


def first_per_class(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` images of each class (0: all), class-major."""
    if not n:
        return np.arange(len(y))
    return np.concatenate([np.flatnonzero(y == c)[:n] for c in range(10)])


def dataset(a):
    """CIFAR-10 with the fixed train and test subsets (the official side uses the same)."""
    import dataclasses

    from fred_jax import data

    ds = data.load("cifar10")
    tr = first_per_class(np.asarray(ds.y_train), a.per_class)
    te = first_per_class(np.asarray(ds.y_test), a.test_per_class)
    return dataclasses.replace(ds, x_train=np.asarray(ds.x_train)[tr],
                               y_train=np.asarray(ds.y_train)[tr],
                               x_test=np.asarray(ds.x_test)[te], y_test=np.asarray(ds.y_test)[te])


def step_buffer_ref(a) -> None:
    if os.path.exists(path(a, "buffers", "test_acc.json")) and not a.force:
        return
    run_logged(ref(a, "buffer", "--out", path(a, "buffers"), "--per_class", str(a.per_class),
                   "--experts", str(a.experts), "--epochs", str(a.expert_epochs_trained),
                   "--seed", str(a.seed), "--test_per_class", str(a.test_per_class)),
               path(a, "buffer_ref.log"))


def step_import_ref(a) -> None:
    from fred_jax import models, official_buffers

    out = path(a, "experts_ref")
    model = models.get(MODEL, 10, (32, 32, 3))
    with harness.Stopwatch() as sw:
        meta = official_buffers.import_buffers(buffer_folder(a), out, model, (32, 32, 3),
                                               settings(a))
    print(f"imported {meta.get('official_files')} into {out} ({sw.wall:.1f} s)")


def step_experts_ours(a) -> None:
    import jax

    from fred_jax import experts

    out = path(a, "experts_ours")
    ds = dataset(a)
    with harness.Stopwatch() as sw:
        experts.train_experts(jax.random.key(a.seed), ds.x_train, ds.y_train, ds.x_test,
                              ds.y_test, num_classes=10,
                              expert_dir=out, dataset="cifar10", num_experts=a.experts,
                              model_name=MODEL, epochs=a.expert_epochs_trained, seed=a.seed,
                              progress=False)
    seconds_file = os.path.join(out, "wall_seconds.json")
    if not os.path.exists(seconds_file):
        with open(seconds_file, "w") as f:
            json.dump({"seconds": sw.wall}, f)


def trajectory_accuracy(folder: str, xt: np.ndarray, yt: np.ndarray) -> list[list[float]]:
    """Test accuracy (%) of every stored epoch of every expert in ``folder`` (our ConvNet)."""
    import jax
    import jax.numpy as jnp

    from fred_jax import expert_store, models

    model = models.get(MODEL, 10, (32, 32, 3))
    _, unravel = expert_store.param_unraveler(model, (32, 32, 3))
    buf = expert_store.ExpertBuffer(folder)

    @jax.jit
    def correct(theta, x, y):
        logits = model.apply({"params": unravel(theta)}, x, train=False)
        return jnp.sum(jnp.argmax(logits, -1) == y)

    out = []
    for i in range(len(buf)):
        traj = np.asarray(buf.trajectory(i))
        accs = []
        for theta in traj[1:]:  # epochs 1..T (epoch 0: the initialisation)
            n = sum(int(correct(theta, xt[j:j + 500], yt[j:j + 500]))
                    for j in range(0, len(yt), 500))
            accs.append(100.0 * n / len(yt))
        out.append(accs)
    return out


def step_expert_acc(a) -> None:
    out = path(a, "expert_acc.json")
    if os.path.exists(out) and not a.force:
        return
    ds = dataset(a)
    xt, yt = ds.x_test, ds.y_test
    result = {"official_experts": trajectory_accuracy(path(a, "experts_ref"), xt, yt),
              "fred_jax_experts": trajectory_accuracy(path(a, "experts_ours"), xt, yt)}
    with open(path(a, "buffers", "test_acc.json")) as f:
        result["official_experts_own_log"] = json.load(f)["test_acc"]
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def step_distill_ref(a) -> None:
    out = path(a, "ref")
    if os.path.exists(os.path.join(out, "synset.npz")) and not a.force:
        return
    run_logged(ref(a, "distill", "--buffers", path(a, "buffers"), "--out", out,
                   "--iterations", str(a.iterations), "--per_class", str(a.per_class),
                   "--syn_steps", str(a.syn_steps), "--k", str(a.k), "--seed", str(a.seed),
                   "--test_per_class", str(a.test_per_class)), path(a, "distill_ref.log"))


def ours_config(a):
    """``configs/cifar10_ipc1.py`` with the settings of this check (module docstring)."""
    from fred_jax import configuration

    config = configuration.from_file(os.path.join(ROOT, "configs", "cifar10_ipc1.py"))
    config.model = MODEL
    config.num_iterations = a.iterations
    config.seed = a.seed
    config.tm.syn_steps = a.syn_steps
    config.k = a.k
    config.tm.experts.dir = path(a, "experts_ref")
    config.tm.experts.epochs = a.expert_epochs_trained
    config.tm.experts.num_experts = a.experts
    config.log_every = 1
    config.checkpoint_every = 50
    config.eval.every = 0
    config.eval.num_eval = 0
    return config


def distill_ours_here(a) -> None:
    """Our TM loop (``fred_jax.train.run``) on the subset; resumes from its checkpoint."""
    from fred_jax import train

    with harness.Stopwatch() as sw:
        train.run(ours_config(a), path(a, "ours"), dataset=dataset(a), progress=False)
    with open(os.path.join(path(a, "ours"), "wall_seconds.json"), "w") as f:
        json.dump({"seconds": sw.wall}, f)


def step_distill_ours(a) -> None:
    out = path(a, "ours")
    if os.path.exists(os.path.join(out, "synset_last.npz")) and not a.force:
        return
    if a.force and os.path.isdir(out):
        import shutil

        shutil.rmtree(out)  # else it resumes from its checkpoint
    cmd = [sys.executable, os.path.abspath(__file__), "--steps", "_distill_ours_here"]
    run_logged(cmd + forwarded(a), path(a, "distill_ours.log"))


def forwarded(a) -> list[str]:
    """The settings of ``a`` as command-line arguments (for a step run in a fresh process)."""
    return [f"--{k}={getattr(a, k)}" for k in ("iterations", "syn_steps", "k", "per_class",
                                                "test_per_class", "experts",
                                                "expert_epochs_trained", "seeds", "epochs",
                                                "seed", "workdir")]


def ours_set(a) -> tuple[np.ndarray, np.ndarray, float]:
    """Our final synthetic set decoded: (NHWC normalised images, labels, learned syn_lr)."""
    from fred_jax import synset

    syn, meta = synset.load(os.path.join(path(a, "ours"), "synset_last.npz"))
    x, y = synset.flat(syn)
    return np.asarray(x, np.float32), np.asarray(y, np.int32), float(meta["syn_lr"])


def ours_decoded_npz(a) -> str:
    """Our set decoded into the .npz layout of ``e2e_tm_ref.py`` (for the official evaluator)."""
    out = path(a, "ours_decoded.npz")
    x, y, lr = ours_set(a)
    np.savez(out, images=x, labels=y, syn_lr=np.float64(lr))
    return out


def eval_official(a, npz: str, step: str) -> None:
    out = path(a, f"{step}.json")
    if os.path.exists(out) and not a.force:
        return
    run_logged(ref(a, "evaluate", "--npz", npz, "--out", out, "--seeds", str(a.seeds),
                   "--epochs", str(a.epochs), "--test_per_class", str(a.test_per_class)),
               path(a, f"{step}.log"))


def step_eval_ref_official(a) -> None:
    eval_official(a, path(a, "ref", "synset.npz"), "eval_ref_official")


def step_eval_ours_official(a) -> None:
    if not os.path.exists(path(a, "eval_ours_official.json")) or a.force:
        eval_official(a, ours_decoded_npz(a), "eval_ours_official")


def evaluate_ours(a, x: np.ndarray, y: np.ndarray, lr: float, step: str, what: str) -> None:
    """Our evaluator (``fred_jax.evaluate.evaluate_synset``) on ``(x, y)`` at rate ``lr``."""
    out = path(a, f"{step}.json")
    if os.path.exists(out) and not a.force:
        return
    import jax

    from fred_jax import evaluate

    with harness.Stopwatch() as sw:
        r = evaluate.evaluate_synset(jax.random.key(a.seed), x, y, dataset(a), models=(MODEL,),
                                     epochs=a.epochs, lr=lr, num_eval=a.seeds, batch_size=256,
                                     dsa=True, progress=False)[MODEL]
    result = {"evaluator": "fred_jax.evaluate.evaluate_synset", "set": what, "accs": r["accs"],
              "mean": r["mean"], "std": r["std"], "seeds": a.seeds, "epochs": a.epochs,
              "lr": lr, "seconds": sw.wall}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{what}, our evaluator: {r['mean']:.2f} +- {r['std']:.2f} % ({sw.wall:.0f} s)")


def step_eval_ref_ours(a) -> None:
    d = np.load(path(a, "ref", "synset.npz"))
    evaluate_ours(a, d["images"], d["labels"], float(d["syn_lr"]), "eval_ref_ours",
                  "official TM set")


def step_eval_ours_ours(a) -> None:
    evaluate_ours(a, *ours_set(a), "eval_ours_ours", "fred_jax TM set")


def read_json(p: str):
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def loss_curves(a) -> dict:
    """TM loss per iteration: the official loop's (recorded) and ours (metrics.jsonl, the row of
    step s holds the loss of the update that made step s)."""
    out = {}
    ref = path(a, "ref", "synset.npz")
    if os.path.exists(ref):
        out["official"] = [float(v) for v in np.load(ref)["loss"]]
    metrics = path(a, "ours", "metrics.jsonl")
    if os.path.exists(metrics):
        rows = {}
        with open(metrics) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "loss" in row:
                    rows[int(row["step"])] = float(row["loss"])
        out["fred_jax"] = [rows[s] for s in sorted(rows)]
    return out


def figure(losses: dict, out: str, smooth: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, color in (("official", "tab:blue"), ("fred_jax", "tab:orange")):
        v = np.asarray(losses.get(name, []), float)
        if not len(v):
            continue
        ax.plot(np.arange(len(v)), v, color=color, alpha=0.3, lw=0.8)
        if len(v) >= smooth:
            m = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
            ax.plot(np.arange(smooth - 1, len(v)), m, color=color, lw=2,
                    label=f"{name} ({smooth}-iteration mean)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("TM loss (normalised parameter distance)")
    ax.set_title("FreD + TM, CIFAR-10 subset, ConvNetW32, same official expert buffer")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def step_table(a) -> None:
    results = {step: read_json(path(a, f"{step}.json")) for _, _, step in ROWS}
    experts = read_json(path(a, "expert_acc.json"))
    losses = loss_curves(a)
    ref_npz = path(a, "ref", "synset.npz")
    syn_lr = {"official": float(np.load(ref_npz)["syn_lr"]) if os.path.exists(ref_npz) else None}
    if os.path.exists(path(a, "ours", "synset_last.npz")):
        syn_lr["fred_jax"] = ours_set(a)[2]
    seconds = {"official_loop": float(np.load(ref_npz)["seconds"]) if os.path.exists(ref_npz)
               else None,
               "fred_jax_process": (read_json(path(a, "ours", "wall_seconds.json")) or {}).get(
                   "seconds"),
               "official_buffer": (read_json(path(a, "buffers", "test_acc.json")) or {}).get(
                   "seconds"),
               "fred_jax_experts": (read_json(path(a, "experts_ours", "wall_seconds.json"))
                                    or {}).get("seconds")}
    print(f"\nFreD + TM, CIFAR-10 ({a.per_class}/class train, {a.test_per_class}/class test), "
          f"{MODEL}, k={a.k} ({1024 // a.k} inst/class), "
          f"syn_steps {a.syn_steps}, {a.iterations} iterations; eval {a.seeds} seeds x "
          f"{a.epochs} epochs, DSA, lr = syn_lr; CPU: {harness.cpu_model()}")
    print(f"learned syn_lr: {syn_lr}; wall seconds: {seconds}")
    print(f"{'set':<16} {'evaluator':<9} {'mean +- std (%)':>16}  per seed (%)")
    for name, who, step in ROWS:
        r = results[step]
        if r is None:
            print(f"{name:<16} {who:<9} {'(not run)':>16}")
            continue
        accs = " ".join(f"{v:.2f}" for v in r["accs"])
        print(f"{name:<16} {who:<9} {r['mean']:>7.2f} +- {r['std']:<5.2f}  {accs}")
    for name, v in losses.items():
        k = min(10, len(v))
        if k:
            print(f"TM loss {name}: first {k} mean {np.mean(v[:k]):.4f}, last {k} mean "
                  f"{np.mean(v[-k:]):.4f} ({len(v)} iterations)")
    if experts:
        for name in ("official_experts", "fred_jax_experts", "official_experts_own_log"):
            rows = experts.get(name) or []
            print(f"{name}: per-epoch test accuracy (%), mean over experts: "
                  f"{[round(float(np.mean(c)), 2) for c in zip(*rows)]}")
    fig = os.path.join(ROOT, "benchmarks", "figures", "e2e_tm_loss.png")
    if losses:
        figure(losses, fig)
        print(f"wrote {os.path.relpath(fig, ROOT)}")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "e2e_tm.json")
    with open(out, "w") as f:
        json.dump({"settings": {"dataset": "cifar10", "per_class": a.per_class, "model": MODEL,
                                "ipc": 1, "k": a.k, "instances_per_class": 1024 // a.k,
                                "syn_steps": a.syn_steps, "expert_epochs": 2,
                                "max_start_epoch": 5, "lr_freq": 1e8, "mom_freq": 0.5,
                                "lr_teacher": 0.01, "lr_lr": 1e-7, "iterations": a.iterations,
                                "experts": a.experts, "test_per_class": a.test_per_class,
                                "expert_epochs_trained": a.expert_epochs_trained,
                                "eval_seeds": a.seeds, "eval_epochs": a.epochs, "dsa": True,
                                "seed": a.seed},
                   "cpu": harness.cpu_model(), "seconds": seconds, "syn_lr": syn_lr,
                   "results": results, "experts_test_acc": experts, "tm_loss": losses}, f,
                  indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=100, help="TM updates of each loop")
    p.add_argument("--syn_steps", type=int, default=10, help="student steps (official 50)")
    p.add_argument("--k", type=int, default=256, help="kept coefficients per channel "
                   "(official 64: 16 instances per class, 4x the cost of 256)")
    p.add_argument("--per_class", type=int, default=100, help="real images per class")
    p.add_argument("--test_per_class", type=int, default=100,
                   help="test images per class, the first ones (0: all 1000)")
    p.add_argument("--experts", type=int, default=2, help="expert trajectories")
    p.add_argument("--expert_epochs_trained", type=int, default=7,
                   help="epochs per expert (>= max_start_epoch 5 + expert_epochs 2)")
    p.add_argument("--seeds", type=int, default=3, help="evaluation seeds")
    p.add_argument("--epochs", type=int, default=300, help="evaluation epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ref_threads", type=int, default=1, help="torch threads of the official "
                   "side (1: on a shared CPU, 2 threads spin against other jobs)")
    p.add_argument("--workdir", default="/tmp/e2e_tm")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {STEPS}")
    p.add_argument("--force", action="store_true", help="redo steps whose outputs exist")
    a = p.parse_args()
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(STEPS) - {"_distill_ours_here"})
    if unknown:
        p.error(f"unknown steps {unknown}; choose from {STEPS}")
    if a.iterations < 1 or a.seeds < 1 or a.epochs < 0 or a.expert_epochs_trained < 7:
        p.error("need --iterations >= 1, --seeds >= 1, --epochs >= 0, "
                "--expert_epochs_trained >= 7")
    os.environ.setdefault("FRED_DATA_DIR", "/work/shared/data")
    os.makedirs(a.workdir, exist_ok=True)
    if steps == ["_distill_ours_here"]:  # step_distill_ours's fresh process
        return distill_ours_here(a)
    for s in STEPS:
        if s in steps:
            globals()[f"step_{s}"](a)


if __name__ == "__main__":
    main()
