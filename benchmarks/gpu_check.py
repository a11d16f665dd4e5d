"""GPU check: the backend's resolved defaults against the CPU-style settings, same inputs and keys.

    bash benchmarks/gpu_check.sh                       # on a GPU (or TPU): < 8 minutes
    python benchmarks/gpu_check.py --allow_cpu         # the same check, small sizes, on CPU
    python benchmarks/gpu_check.py --allow_cpu --gpu_settings   # GPU's settings set explicitly

Runs three workloads twice, once per mode, on the same random inputs and keys:

- ``dm``: one FreD + DM distillation iteration (``fred_jax.train.create(...).step_fn``);
- ``tm``: one FreD + TM iteration, ``syn_steps`` small, on fake experts (random walks written to
  a temporary folder, as ``tests/test_tm.py`` makes them);
- ``eval``: one evaluation training epoch of ``--seeds`` networks, then the test pass
  (``fred_jax.evaluate.train_seeds``);
- ``dc``: one FreD + DC (DSA) iteration at ipc 1 (one outer step: per class the real batch's
  gradient, the synthetic gradient to second order, the distance's gradient).

Modes: ``auto`` leaves every speed setting to the backend policy (``fred_jax.platform``: on a
GPU whole batches, vmapped seeds, ``lax`` convolutions); ``cpu_style`` sets them as XLA:CPU's
policy does, through config fields and arguments (:data:`CPU_STYLE`: ``dm.chunk=32``,
``tm.grad_chunk=20``, ``tapgrad`` / ``im2col`` convolutions, evaluation seeds one call after
another; DC ``im2col``, which its first-order parts then take too). ``--gpu_settings``
replaces ``auto`` by the GPU policy's values set explicitly
(``fred_jax.platform.policy(backend="gpu")``: ``dm.chunk=0``, ``tm.grad_chunk=0``, ``lax``
convolutions), so that a CPU run compares the two code paths too (on XLA:CPU the evaluation
seeds still run in a ``lax.map``; only a mesh or an accelerator vmaps them). The two must
compute the same numbers: the check compares the loss and the update
of every learnable leaf after one step (DM, TM; the update is the learning rate times the
gradient), and the trained parameters and test accuracies of every seed (evaluation), with
relative tolerance ``--rtol`` (norm of the difference over the norm), under
``jax.default_matmul_precision(--precision)`` (default ``highest``: a GPU's default float32
matmuls round their inputs to TF32, whose 1e-3 relative error is not what this compares).

Prints, per workload and mode, the first call (compilation) and the median step over
``--repeats`` calls, XLA's temp buffer size of the step (DM, TM), and the device's peak memory
in use so far (``memory_stats()``, cumulative over the process: the first mode's figure is that
mode's alone). Records the rows with ``benchmarks/harness.py``. Exits 1 if a comparison fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Callable

import jax
import numpy as np

from fred_jax import configuration, data, evaluate, expert_store, models, platform, train
from fred_jax.objectives import tm_config

import harness

SIZES = {
    "full": dict(shape=(32, 32, 3), classes=10, model="ConvNet", k=64, batch_real=256,
                 syn_steps=5, seeds=5, eval_images=160, test_images=2048, repeats=5),
    "small": dict(shape=(16, 16, 3), classes=4, model="ConvNetW32", k=64, batch_real=64,
                  syn_steps=2, seeds=2, eval_images=40, test_images=256, repeats=2),
}
"""``full``: CIFAR-10 shapes (ConvNet width 128, FreD ipc 1 with k=64: 16 instances per class,
DM real batch 256 per class, evaluation on 160 images); ``small``: for a CPU run."""

AUTO = {"dm": {}, "tm": {}, "eval": {"conv_impl": None, "seeds_in_loop": False}, "dc": {}}
"""The backend policy's defaults: config fields left at auto / None."""

CPU_STYLE = {
    "dm": {"conv_impl": "tapgrad", "dm.chunk": 32},
    "tm": {"conv_impl": "im2col", "tm.grad_chunk": 20},
    "eval": {"conv_impl": "tapgrad", "seeds_in_loop": True},
    "dc": {"conv_impl": "im2col"},
}
"""XLA:CPU's policy, set explicitly (config fields for DM / TM, arguments for evaluation)."""


def gpu_style() -> dict:
    """The GPU policy's values as explicit settings (``--gpu_settings``)."""
    pol = platform.policy(backend="gpu")
    return {"dm": {"conv_impl": pol.conv_dm, "dm.chunk": pol.dm_chunk},
            "tm": {"conv_impl": pol.conv_tm, "tm.grad_chunk": pol.tm_grad_chunk},
            "eval": {"conv_impl": pol.conv_train, "seeds_in_loop": pol.seeds_in_loop},
            "dc": {"conv_impl": pol.conv_dc}}


def random_dataset(size: dict) -> data.Dataset:
    """Random normalised images (the cost does not depend on their values)."""
    rng = np.random.default_rng(0)
    classes, shape = size["classes"], tuple(size["shape"])
    per_class = max(size["batch_real"], size["eval_images"] // classes)
    y = np.repeat(np.arange(classes), per_class).astype(np.int32)
    x = rng.normal(size=(y.size, *shape)).astype(np.float32)
    return data.Dataset(name="random", num_classes=classes,
                        class_names=tuple(map(str, range(classes))), image_shape=shape,
                        mean=np.zeros(shape[-1], np.float32),
                        std=np.ones(shape[-1], np.float32), x_train=x, y_train=y,
                        x_test=x[: size["test_images"]], y_test=y[: size["test_images"]])


def base_config(objective: str, size: dict, overrides: dict) -> Any:
    config = configuration.defaults()
    config.update_from_flattened_dict({
        "dataset": "random", "objective": objective, "model": size["model"], "ipc": 1,
        "k": size["k"], "dm.batch_real": size["batch_real"], "dc.batch_real": size["batch_real"],
        "seed": 0})
    if objective == "tm":
        config.tm = tm_config.defaults()
        config.lr = 1e4
        config.tm.update_from_flattened_dict({
            "syn_steps": size["syn_steps"], "max_start_epoch": 2, "expert_epochs": 1,
            "num_trajectories": 1, "experts.epochs": 3})
    config.update_from_flattened_dict(overrides)
    return config


def write_experts(config: Any, size: dict, folder: str) -> None:
    """Two fake experts: random walks of 3 epochs from two initialisations, plus experts.json."""
    shape = tuple(size["shape"])
    model = models.get(size["model"], size["classes"], shape)
    num_params, _ = expert_store.param_unraveler(model, shape)
    rng = np.random.default_rng(1)
    for i in range(2):
        start = np.asarray(expert_store.flatten_params(
            models.init(model, jax.random.key(i), shape)["params"]))
        walk = np.cumsum(0.01 * rng.normal(size=(3, num_params)), axis=0)
        np.save(expert_store.expert_path(folder, i),
                np.concatenate([[start], start + walk]).astype(np.float32))
    with open(os.path.join(folder, expert_store.META_FILE), "w") as f:
        json.dump({**expert_store.expert_settings(config, num_params), "epochs": 3, "seed": 0,
                   "test_acc": {}, "seconds": {}}, f)


def rel_err(a: Any, b: Any) -> float:
    """max over leaves of ||a - b|| / ||b|| (absolute where ||b|| = 0)."""
    errs = []
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        norm = np.linalg.norm(y)
        errs.append(float(np.linalg.norm(x - y) / (norm if norm > 0 else 1.0)))
    return max(errs)


def step_mode(config: Any, dataset: data.Dataset, repeats: int) -> dict:
    """One distillation step's outputs (loss, update of each leaf), its timing and memory."""
    setup = train.create(config, dataset)
    before = jax.tree.map(np.asarray, setup.state.learnable)
    state = [setup.state]
    outputs = {}

    def call(i):
        state[0], metrics = setup.step_fn(state[0])
        if i == 0:
            outputs["loss"] = float(metrics["loss"])
            outputs["update"] = jax.tree.map(lambda new, old: np.asarray(new) - old,
                                             state[0].learnable, before)
        return metrics

    timing = harness.timeit(call, repeats)
    memory = setup.step_fn.lower(setup.state).compile().memory_analysis()  # cached program
    return {"outputs": outputs, "timing": timing,
            "xla_temp_mib": memory.temp_size_in_bytes / 2**20 if memory else None}


def eval_mode(settings: dict, size: dict, dataset: data.Dataset, repeats: int) -> dict:
    """One evaluation epoch + test pass per seed: parameters, accuracies, timing."""
    keys = evaluate.seed_keys(jax.random.key(0), size["seeds"])
    n = size["eval_images"]
    groups = ([keys[i:i + 1] for i in range(size["seeds"])] if settings["seeds_in_loop"]
              else [keys])

    def run(epochs: int) -> list[dict]:
        return [evaluate.train_seeds(
            g, size["model"], dataset.x_train[:n], dataset.y_train[:n], dataset.x_test,
            dataset.y_test, num_classes=size["classes"], epochs=epochs, lr=0.01,
            conv_impl=settings["conv_impl"], progress=False, return_state=True)
            for g in groups]

    with harness.Stopwatch() as first:
        results = run(0)  # one epoch (the protocol trains epochs + 1), compiles
    params = jax.tree.map(lambda *leaves: np.concatenate([np.asarray(v) for v in leaves]),
                          *[r["state"].params for r in results])
    accs = np.concatenate([r["accs"] for r in results])
    timed = run(repeats - 1)  # `repeats` epochs, compiled programs reused
    train_s = sum(r["train_seconds"] for r in timed)
    test_s = sum(r["seconds"] - r["train_seconds"] for r in timed)
    return {"outputs": {"params": params, "accs": accs}, "compile_s": first.wall,
            "epoch_s": train_s / repeats, "test_pass_s": test_s,
            "conv_impl": results[0]["conv_impl"]}


def compare(name: str, a: dict, b: dict, rtol: float, num_test: int) -> list[tuple]:
    """(what, error, tolerance, ok) rows comparing the outputs of two modes."""
    if name == "eval":
        acc = float(np.max(np.abs(a["accs"] - b["accs"])))
        one_image = 100.0 / num_test
        err = rel_err(a["params"], b["params"])
        return [("eval params after 1 epoch", err, rtol, err <= rtol),
                ("eval test accuracy (points)", acc, one_image, acc <= one_image + 1e-9)]
    loss = abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-30)
    upd = rel_err(a["update"], b["update"])
    return [(f"{name} loss", loss, rtol, loss <= rtol),
            (f"{name} update (lr x gradient)", upd, rtol, upd <= rtol)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--allow_cpu", action="store_true", help="run on a CPU backend too")
    p.add_argument("--size", choices=tuple(SIZES), default=None,
                   help="full (default on GPU/TPU) or small (default on CPU)")
    p.add_argument("--workloads", default="dm,tm,eval,dc", help="subset of dm,tm,eval,dc")
    p.add_argument("--repeats", type=int, default=0, help="timed calls (0: the size's)")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--precision", default="highest", choices=("highest", "high", "default"),
                   help="jax.default_matmul_precision while running")
    p.add_argument("--gpu_settings", action="store_true",
                   help="instead of auto, set the GPU policy's values explicitly")
    a = p.parse_args(argv)
    backend = jax.default_backend()
    if backend == "cpu" and not a.allow_cpu:
        p.error("no GPU/TPU backend (jax.default_backend() == 'cpu'); pass --allow_cpu to run "
                "the check on CPU at small sizes")
    workloads = [w for w in a.workloads.split(",") if w]
    if set(workloads) - {"dm", "tm", "eval", "dc"}:
        p.error(f"--workloads must be a subset of dm,tm,eval,dc, got {a.workloads!r}")
    size = dict(SIZES[a.size or ("small" if backend == "cpu" else "full")])
    repeats = a.repeats or size["repeats"]
    dataset = random_dataset(size)
    facts = harness.machine()
    print(f"gpu_check: {facts['device']} ({backend}), jax {facts['jax']}, commit "
          f"{harness.commit_cell(facts)}; size {json.dumps(size)}; precision {a.precision}",
          flush=True)

    checks: list[tuple] = []
    modes = {"gpu_style" if a.gpu_settings else "auto": gpu_style() if a.gpu_settings else AUTO,
             "cpu_style": CPU_STYLE}
    first = next(iter(modes))
    settings = {"size": a.size or ("small" if backend == "cpu" else "full"),
                "repeats": repeats, "rtol": a.rtol, "precision": a.precision}
    with harness.Record("gpu_check", settings=settings) as record, \
            jax.default_matmul_precision(a.precision), tempfile.TemporaryDirectory() as tmp:
        for name in workloads:
            out = {}
            for mode, table in modes.items():
                over = table[name]
                if name == "eval":
                    r = eval_mode(over, size, dataset, repeats)
                    row = {"compile_s": r["compile_s"], "step_s": r["epoch_s"],
                           "test_pass_s": r["test_pass_s"], "conv_impl": r["conv_impl"]}
                else:
                    config = base_config(name, size, over)
                    if name == "tm":
                        folder = os.path.join(tmp, f"experts_{mode}")
                        os.makedirs(folder)
                        config.tm.experts.dir = folder
                        write_experts(config, size, folder)
                    r = step_mode(config, dataset, repeats)
                    row = {"compile_s": r["timing"].compile_s, "step_s": r["timing"].median,
                           "step_iqr_s": r["timing"].iqr, "xla_temp_mib": r["xla_temp_mib"]}
                out[mode] = r["outputs"]
                row = record.add(workload=name, mode=mode, settings=json.dumps(over),
                                 **row, device_peak_mib=harness.device_peak_mib())
                print(_line(row), flush=True)
            rows = compare(name, out["cpu_style"], out[first], a.rtol, size["test_images"])
            for what, err, tol, ok in rows:
                print(f"  {'ok  ' if ok else 'FAIL'} {what}: {err:.2e} (tolerance {tol:.0e})",
                      flush=True)
            checks += rows
            record.add(workload=name, mode="agreement",
                       max_rel_err=max(r[1] for r in rows if "accuracy" not in r[0]),
                       ok=all(r[3] for r in rows))
    failed = [c for c in checks if not c[3]]
    print(f"gpu_check: {len(checks) - len(failed)}/{len(checks)} comparisons within tolerance; "
          f"results in {harness.results_md(harness.results_dir())}")
    return 1 if failed else 0


def _line(row: dict) -> str:
    def f(key: str, fmt: Callable[[float], str]) -> str:
        return fmt(row[key]) if row.get(key) is not None else "-"

    return (f"{row['workload']:<4} {row['mode']:<9} first call {f('compile_s', '{:.1f}'.format)} s,"
            f" step {f('step_s', lambda v: f'{1e3 * v:.1f}')} ms"
            + (f", test pass {1e3 * row['test_pass_s']:.1f} ms" if "test_pass_s" in row else "")
            + (f", XLA temp {row['xla_temp_mib']:.1f} MiB" if row.get("xla_temp_mib") else "")
            + f", device peak so far {f('device_peak_mib', '{:.0f}'.format)} MiB"
            + f"  {row['settings']}")


if __name__ == "__main__":
    sys.exit(main())
