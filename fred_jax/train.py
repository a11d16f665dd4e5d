"""The distillation loop: init the frequency memory, run an objective, evaluate, checkpoint, export.

State: a pytree ``TrainState(learnable, opt_state, indices, step, key)`` where ``learnable`` is
``{"coeffs": [C, n, k, ch], **objective.extra_learnables}``. One jitted step folds the step into
the run key and hands it to the objective's ``update`` (``fred_jax.objectives``) together with
``apply``, the optax update of every learnable leaf (``optax.multi_transform``: SGD with
momentum on the coefficients, the objective's own optimiser on every extra leaf).

Learning rate of the coefficients. The official FreD code optimises coefficients of the
*unnormalised* DCT-II of torch-dct (``norm=None``): per axis of length N,
``X_k = 2 sum_n x_n cos(pi k (2n+1) / 2N)``, i.e. ``s_0 = 2 sqrt(N)`` and ``s_k = sqrt(2N)``
times our orthonormal coefficient; a 2-D coefficient ``(k1, k2)`` is scaled by
``s = s_k1(H) * s_k2(W)``. With ``c_ref = s c``, ``dL/dc = s dL/dc_ref``, so an SGD(+momentum)
step of rate ``lr_ref`` on ``c_ref`` is, in our coordinates, a step of rate ``lr_ref / s^2`` per
coefficient. ``lr_convention = "torch_dct"`` applies exactly that per-coefficient factor, so
``config.lr`` is the reference's value (DM 1e6, DC 1e3 on 32x32: 1e6 / 64^2 = 244 for most
coefficients, 61 for the DC term). ``"orthonormal"``: ``config.lr`` is used as is (pixels,
other transforms). ``tests/test_objectives.py`` checks the equivalence on a toy problem.

Devices (``config.num_devices``, :func:`fred_jax.sharding.mesh_for`): with one device the step
is the plain jitted program; with a mesh the state and the real data are replicated over it,
the step is jitted with replicated in/out shardings, and the objectives split their parallel
axis (classes, trajectories) over it, as does evaluation (seeds). The full training set is on
every device (and every host): real batches are sampled per class by random index inside the
step, so any device may need any image, and keeping the same sample as on one device is what
makes 1 and N devices agree; the datasets of the paper (at most ImageNet subsets of ~13k
images) fit. Multi-host: every process runs the same loop; only process 0
(:func:`fred_jax.sharding.is_main_process`) writes metrics, TensorBoard, exports, pictures and
``results.json``; checkpoints are written by all (orbax, shared workdir).

Failures (nothing lost, nothing silently wrong):
- Divergence: after every update the step reports ``learnable_max_abs``, the largest |value| of
  every learnable leaf (NaN when any is NaN). A non-finite loss, or a state with a non-finite or
  exploding value (> ``EXPLODED``), stops the run with :class:`NonFiniteLossError` before that
  state is checkpointed or exported (the loss alone does not show it: under ``jit`` on XLA:CPU
  a network maps NaN images to finite features).
- Provenance: every checkpoint records the config; a rerun whose config differs stops before
  loading data with :class:`WorkdirError` naming the fields (``allow_changes`` continues with
  new values where that means something, e.g. more iterations), as does a workdir finished
  beyond ``num_iterations``. ``config.json`` is written only after that check.
- The final checkpoint, exports and pictures are written before the final evaluation; its
  failure raises :class:`EvaluationError` saying how to rerun only the evaluation.
- SIGTERM/SIGINT: the loop finishes the iteration, saves a checkpoint and raises
  :class:`Interrupted` (a second signal stops at once).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from absl import logging

from fred_jax import (augment, checkpoint, configuration, data, evaluate, models, objectives,
                      sharding, synset, transforms)

PyTree = Any
Callback = Callable[[int, "TrainState", dict], None]

LR_CONVENTIONS = ("torch_dct", "orthonormal")
PARAMETERIZATIONS = ("fred", "pixel")


EXPLODED = 1e6
"""Largest |learnable value| of a sane synthetic set. Coefficients of an orthonormal transform
bound the image norm from below: 1e6 is an image of 128x128x3 pixels about 4500 standard
deviations from the mean (normalised data); a diverged run passes it within a few steps."""

FREE_FIELDS = ("data_dir", "num_devices", "log_every", "checkpoint_every", "keep_checkpoints")
"""Config fields a resumed run may change freely: they change no number of the result."""

FIXED_FIELDS = ("dataset", "zca", "seed", "parameterization", "ipc", "k", "transform",
                "mask_kind", "objective")
"""Config fields no resumed run may change: they define the stored set or its initialisation."""


class RunError(RuntimeError):
    """A run stopped for a reason the user can act on; the message says what, where and what
    to do."""


class NonFiniteLossError(RunError):
    """The synthetic set diverged: non-finite loss, or a non-finite or exploding learnable
    value after an update."""


class WorkdirError(RunError):
    """The workdir holds a run that this configuration does not continue."""


class EvaluationError(RunError):
    """The final evaluation failed; the checkpoint and the exports are on disk."""


class Interrupted(RunError):
    """SIGTERM or SIGINT: a checkpoint was saved and the run stopped (a command exits with
    ``exit_status`` = 128 + the signal number, the shell's convention)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


@flax.struct.dataclass
class TrainState:
    """Everything that changes during distillation, plus the fixed kept indices."""

    learnable: dict
    opt_state: PyTree
    indices: jax.Array
    step: jax.Array
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class Setup:
    """A ready-to-run distillation: initial state, jitted step and what the outputs need."""

    state: TrainState
    step_fn: Callable[[TrainState], tuple[TrainState, dict]]
    objective: objectives.Objective
    problem: objectives.Problem
    transform: str
    image_shape: tuple[int, ...]


# ----------------------------------------------------------------------------- learning rate


def coefficient_lr_scale(
    indices: np.ndarray, image_shape: tuple[int, ...], transform: str, convention: str
) -> np.ndarray:
    """Per-coefficient factor ``[C, 1, k, 1]`` on the coefficient learning rate (module doc)."""
    indices = np.asarray(indices)
    if convention == "orthonormal":
        return np.ones((indices.shape[0], 1, indices.shape[1], 1), np.float32)
    if convention != "torch_dct":
        raise ValueError(f"lr_convention must be one of {LR_CONVENTIONS}, got {convention!r}")
    if transform != "dct":
        raise ValueError(f"lr_convention 'torch_dct' needs transform 'dct', got {transform!r}")
    s = transforms.torch_dct_scale(tuple(image_shape[:-1])).reshape(-1)[indices]
    return (1.0 / s**2).astype(np.float32)[:, None, :, None]


def _scale_by_array(scale: np.ndarray) -> optax.GradientTransformation:
    """Multiply every update leaf elementwise by the constant ``scale`` (broadcast)."""
    scale = jnp.asarray(scale)

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u: u * scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    lr: float,
    momentum: float,
    lr_scale: np.ndarray,
    extra_optimisers: dict[str, optax.GradientTransformation],
) -> optax.GradientTransformation:
    """SGD (reference momentum) on ``"coeffs"`` scaled per coefficient by ``lr_scale``;
    ``extra_optimisers[name]`` on every other learnable leaf ``name``."""
    coeffs_tx = optax.chain(
        _scale_by_array(lr_scale), optax.sgd(lr, momentum=momentum if momentum else None)
    )
    transforms = {"coeffs": coeffs_tx, **extra_optimisers}
    return optax.multi_transform(transforms, {name: name for name in transforms})


def make_apply(tx: optax.GradientTransformation) -> objectives.Apply:
    """``apply(learnable, opt_state, grads) -> (learnable, opt_state)``: one optax step."""

    def apply(learnable, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, learnable)
        return optax.apply_updates(learnable, updates), opt_state

    return apply


# ----------------------------------------------------------------------------- set-up


def resolve(config: Any) -> tuple[str, float, str]:
    """``(transform, lr, lr_convention)`` after the ``parameterization`` switch: "pixel" is the
    identity transform with k = d, trained with ``config.lr_pixel`` as given."""
    if config.parameterization == "pixel":
        return "identity", float(config.lr_pixel), "orthonormal"
    return config.transform, float(config.lr), config.lr_convention


def kept_per_channel(config: Any, image_shape: tuple[int, ...]) -> int:
    """k: ``config.k`` for FreD, all d values for the pixel baseline."""
    if config.parameterization == "pixel":
        return math.prod(image_shape[:-1])
    return int(config.k)


def create(config: Any, dataset: Any, mesh: Any = None) -> Setup:
    """Initial state (real-image init, EVR masks), objective and the jitted step.

    mesh: a ``jax.sharding.Mesh`` (:func:`fred_jax.sharding.mesh_for`) or None for one device.
    With a mesh the state, the real data and the step's inputs and outputs are replicated over
    it (the objective shards its parallel axis inside the step).
    """
    root = jax.random.PRNGKey(int(config.seed))
    image_shape = tuple(int(s) for s in dataset.image_shape)
    transform, lr, convention = resolve(config)
    k = kept_per_channel(config, image_shape)
    init = synset.init(
        jax.random.fold_in(root, 0), dataset.x_train, dataset.y_train, dataset.num_classes,
        ipc=int(config.ipc), k=k, transform=transform, mask_kind=config.mask_kind,
    )
    x_train, y_train = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
    index = data.class_index(y_train, dataset.num_classes)
    if mesh is None:
        x_train, y_train = jnp.asarray(x_train), jnp.asarray(y_train)
    else:
        x_train, y_train, index = sharding.replicate((x_train, y_train, index), mesh)
    model = models.get(config.model, dataset.num_classes, image_shape,
                       conv_impl=objectives.conv_impl(config))
    indices = init.indices

    def decode(coeffs):
        return synset.decode(coeffs, indices, transform, image_shape)

    problem = objectives.Problem(
        decode=decode, x_train=x_train, y_train=y_train, class_index=index, model=model,
        num_classes=dataset.num_classes, image_shape=image_shape, ipc=int(config.ipc),
        instances_per_class=init.n, mesh=mesh,
    )
    objective = objectives.build(config, problem)
    learnable = {"coeffs": init.coeffs, **objective.extra_learnables}
    tx = make_optimizer(
        lr, float(config.momentum),
        coefficient_lr_scale(np.asarray(indices), image_shape, transform, convention),
        dict(objective.extra_optimisers),
    )
    state = TrainState(
        learnable=learnable, opt_state=tx.init(learnable), indices=indices,
        step=jnp.zeros((), jnp.int32), key=jax.random.fold_in(root, 1),
    )
    apply = make_apply(tx)

    def step(state: TrainState) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.key, state.step)
        learnable, opt_state, metrics = objective.update(
            state.learnable, state.opt_state, key, apply)
        largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)).astype(jnp.float32)
                                     for leaf in jax.tree_util.tree_leaves(learnable)]))
        metrics = {**metrics, "learnable_max_abs": largest}
        return state.replace(learnable=learnable, opt_state=opt_state, step=state.step + 1), metrics

    if mesh is None:
        step_fn = jax.jit(step)
    else:
        state = sharding.replicate(state, mesh)
        step_fn = jax.jit(step, in_shardings=sharding.replicated(mesh),
                          out_shardings=sharding.replicated(mesh))
    return Setup(state=state, step_fn=step_fn, objective=objective, problem=problem,
                 transform=transform, image_shape=image_shape)


def current_synset(setup: Setup, state: TrainState) -> synset.SynSet:
    """The synthetic set held by ``state``, as host arrays (also from a multi-host mesh)."""
    coeffs, indices = sharding.to_host((state.learnable["coeffs"], state.indices))
    return synset.SynSet(coeffs=coeffs, indices=indices, transform=setup.transform,
                         image_shape=setup.image_shape)


# ----------------------------------------------------------------------------- outputs


class _Writer:
    """metrics.jsonl + TensorBoard (tensorboardX) scalars."""

    def __init__(self, workdir: str, resume_step: int):
        from tensorboardX import SummaryWriter

        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):  # drop rows a killed run wrote after its last checkpoint
            with open(self.path) as f:
                rows = [_metrics_row(line, self.path) for line in f]
            with open(self.path, "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows
                             if row is not None and row["step"] <= resume_step)
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        for name, value in scalars.items():
            self.tb.add_scalar(name, value, step)

    def close(self) -> None:
        self.tb.close()


def _metrics_row(line: str, path: str) -> dict | None:
    """One row of metrics.jsonl, or None (with a warning) for a line a kill tore apart."""
    try:
        row = json.loads(line)
        int(row["step"])
        return row
    except (ValueError, KeyError, TypeError):
        logging.warning("%s: dropped a damaged line (a run killed while writing it?): %r",
                        path, line[:80])
        return None


class _NoWriter:
    """The writer of processes other than 0: metrics are written once, by process 0."""

    def write(self, step: int, scalars: dict[str, float]) -> None:
        del step, scalars

    def close(self) -> None:
        pass


def eval_lr(config: Any, state: TrainState) -> float:
    """Evaluation learning rate: a learned ``syn_lr`` leaf (TM) if the objective has one,
    else ``config.eval.lr``."""
    if "syn_lr" in state.learnable:
        return float(sharding.to_host(state.learnable["syn_lr"]))
    return float(config.eval.lr)


def _evaluate(config: Any, setup: Setup, state: TrainState, dataset: Any) -> dict[str, dict]:
    images = np.asarray(current_synset(setup, state).images())
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 2),
                             int(state.step))
    names = [m.strip() for m in config.eval.models.split(",") if m.strip()]
    results = evaluate.evaluate_synset(
        key, images, None, dataset, models=names, epochs=int(config.eval.epochs),
        lr=eval_lr(config, state), num_eval=int(config.eval.num_eval),
        batch_size=int(config.eval.batch_size), dsa=bool(config.eval.dsa),
        dsa_strategy=config.dsa_strategy or augment.STRATEGY, dc_strategy=config.eval.dc_augment,
        conv_impl=config.eval.conv_impl, mesh=setup.problem.mesh, progress=False,
    )
    return {name: {"mean": float(r["mean"]), "std": float(r["std"]),
                   "accs": [float(a) for a in r["accs"]]} for name, r in results.items()}


def _export(path: str, setup: Setup, state: TrainState, dataset: Any, **extra: Any) -> None:
    extra.update({name: float(sharding.to_host(value)) for name, value in state.learnable.items()
                  if name != "coeffs" and np.size(value) == 1})
    synset.save(path, current_synset(setup, state), mean=np.asarray(dataset.mean),
                std=np.asarray(dataset.std), dataset=dataset.name,
                norm_stats=getattr(dataset, "norm_stats", "dataset"),
                zca=getattr(dataset, "zca", None) is not None, **extra)


def _pictures(workdir: str, setup: Setup, state: TrainState, dataset: Any) -> None:
    """PNG grids of the decoded (denormalised) images and of the class masks."""
    from fred_jax import visualize

    current = current_synset(setup, state)
    visualize.save_image_grid(os.path.join(workdir, "synset_images.png"),
                              np.asarray(current.images()), dataset.mean, dataset.std)
    visualize.save_mask_grid(os.path.join(workdir, "synset_masks.png"),
                             visualize.indices_to_masks(np.asarray(current.indices),
                                                        setup.image_shape[:-1]))


# ----------------------------------------------------------------------------- the loop


def device_mesh(config: Any) -> Any:
    """The device mesh of ``config.num_devices`` (0: all devices of all hosts), or None for a
    single device (plain unsharded programs); ConfigError when the devices are not there."""
    try:
        return sharding.mesh_for(int(config.num_devices))
    except ValueError as e:
        raise configuration.ConfigError(f"config.num_devices: {e}") from None


def run(
    config: Any,
    workdir: str,
    *,
    dataset: Any = None,
    callbacks: Iterable[Callback] = (),
    progress: bool = True,
    allow_changes: Iterable[str] = (),
) -> dict:
    """Distil ``config`` into ``workdir``, resuming from its latest checkpoint, and return the
    results (also written to ``workdir/results.json``).

    dataset: a loaded ``fred_jax.data.Dataset`` (default: ``data.load`` from the config).
    callbacks: ``fn(step, state, metrics)`` after every iteration (e.g. early stops; an
    exception raised there ends the run like a kill, after the last checkpoint).
    allow_changes: config fields (dotted) whose value may differ from the run stored in
    ``workdir`` (e.g. ``num_iterations`` to continue it); others stop the run (module doc).
    Devices: ``config.num_devices`` (:func:`device_mesh`); in a multi-process run every
    process calls this and only process 0 writes files besides the checkpoints (and shows
    progress).
    """
    configuration.validate(config, dataset=dataset)
    mesh = device_mesh(config)
    main = sharding.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                   max_to_keep=int(config.keep_checkpoints))
    try:
        changes = check_workdir(config, workdir, ckpt, allow_changes)
        if main:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2, sort_keys=True))
        if dataset is None:
            dataset = data.load(config.dataset, data_dir=config.data_dir or None, zca=config.zca,
                                norm_stats=config.norm_stats)
        setup = create(config, dataset, mesh)
        return _loop(config, workdir, dataset, setup, ckpt, callbacks, progress and main, changes)
    finally:
        ckpt.close()


# ----------------------------------------------------------------------------- provenance


def config_dict(config: Any) -> dict:
    """``config`` as the JSON dict the checkpoints record."""
    return json.loads(config.to_json_best_effort())


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def config_changes(stored: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted field: (stored, current)}`` for every field whose value differs, except
    :data:`FREE_FIELDS`."""
    old, new = _flatten(stored), _flatten(current)
    return {name: (old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
            if name not in FREE_FIELDS and old.get(name) != new.get(name)}


def _stored_run(workdir: str, ckpt: checkpoint.Checkpointer) -> tuple[int, dict | None] | None:
    """``(step, config)`` of the newest checkpoint whose record reads back (config None for a
    checkpoint written before configs were recorded: then ``config.json`` if present), or
    None for a fresh workdir."""
    steps = ckpt.all_steps()
    for step in reversed(steps):
        try:
            record = ckpt.read_record(step)
        except (OSError, ValueError):
            continue  # damaged: restore_latest says so when it skips it
        if "config" in record:
            return step, record["config"]
    if not steps:
        return None
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            return steps[-1], json.load(f)
    return steps[-1], None


def check_workdir(config: Any, workdir: str, ckpt: checkpoint.Checkpointer,
                  allow_changes: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Raise :class:`WorkdirError` unless ``config`` continues the run stored in ``workdir``:
    same fields (except :data:`FREE_FIELDS` and ``allow_changes``; never
    :data:`FIXED_FIELDS`) and not finished beyond ``config.num_iterations``. Returns the
    allowed changes ``{field: (stored, current)}`` (empty for a fresh workdir)."""
    stored = _stored_run(workdir, ckpt)
    if stored is None:
        return {}
    step, stored_config = stored
    total = int(config.num_iterations)
    if step > total:
        raise WorkdirError(
            f"{workdir} holds a run at iteration {step}, beyond num_iterations={total}: rerun "
            f"with --config.num_iterations={step} to export it again, or use another --workdir")
    if stored_config is None:
        logging.warning("%s: its checkpoints record no config; cannot check that this run "
                        "continues the same settings", workdir)
        return {}
    changes = config_changes(stored_config, config_dict(config))
    allowed = {name.strip() for name in allow_changes if name.strip()}
    fixed = [name for name in changes if name.split(".")[0] in FIXED_FIELDS]
    refused = [name for name in changes if name not in allowed or name in fixed]
    if refused:
        listed = "; ".join(f"{name}: stored {changes[name][0]!r}, now {changes[name][1]!r}"
                           for name in refused)
        if fixed:
            todo = "these define the stored set: use another --workdir"
        else:
            todo = (f"rerun with the stored values, use another --workdir, or add "
                    f"--allow_changes={','.join(refused)} to continue this run with the new ones")
        raise WorkdirError(f"{workdir} holds a run (checkpoint at iteration {step}) made with "
                           f"other settings: {listed}; {todo}")
    return changes


# ----------------------------------------------------------------------------- stopping


class _StopSignals:
    """While active (main thread only): SIGTERM/SIGINT set ``signum``, which the loop checks
    after each iteration; a second signal raises KeyboardInterrupt at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logging.warning("%s: stopping after this iteration, with a checkpoint",
                        signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _check_diverged(config: Any, scalars: dict, step: int, last_saved: int,
                    directory: str) -> None:
    """Raise :class:`NonFiniteLossError` when the loss or the state after the update is bad."""
    loss, largest = scalars["loss"], scalars["learnable_max_abs"]
    if math.isfinite(loss) and largest <= EXPLODED:
        return
    what = (f"non-finite loss ({loss})" if not math.isfinite(loss) else
            f"non-finite learnable values" if not math.isfinite(largest) else
            f"exploding learnable values (largest |value| {largest:.3g} > {EXPLODED:g})")
    saved = (f"resume from the last good checkpoint (iteration {last_saved} in {directory}) "
             f"with --allow_changes=lr" if last_saved else "no checkpoint was written yet")
    raise NonFiniteLossError(
        f"{what} at iteration {step}: the synthetic set diverged and this state was not saved; "
        f"lower the learning rate (config.lr={config.lr}, lr_pixel={config.lr_pixel}) in a new "
        f"--workdir, or {saved}")


def _loop(config: Any, workdir: str, dataset: Any, setup: Setup, ckpt: checkpoint.Checkpointer,
          callbacks: Iterable[Callback], progress: bool,
          changes: dict[str, tuple[Any, Any]]) -> dict:
    """Resume from ``ckpt``, iterate with evaluation and checkpoints, write the outputs."""
    state = setup.state
    record = {"history": [], "best": None, "wall_time": 0.0, "changes": []}
    restored = ckpt.restore_latest(setup.state)
    if restored is not None:
        state, record = restored
        logging.info("resumed from %s at iteration %d", ckpt.directory, int(state.step))
    if not np.array_equal(np.asarray(state.indices), np.asarray(setup.state.indices)):
        raise WorkdirError(f"the checkpoint in {workdir} keeps other frequencies than this "
                           f"configuration (another dataset, k, mask or seed): use another "
                           f"--workdir")
    record["config"] = config_dict(config)
    if changes:
        record.setdefault("changes", []).append(
            {"step": int(state.step), "fields": {k: list(v) for k, v in changes.items()}})

    start, total = int(state.step), int(config.num_iterations)
    writer = _Writer(workdir, start) if sharding.is_main_process() else _NoWriter()
    n, k = setup.state.learnable["coeffs"].shape[1:3]
    logging.info("distilling %s with %s/%s: %d classes x %d instances x k=%d, %d iterations",
                 config.dataset, config.parameterization, config.objective,
                 dataset.num_classes, n, k, total)
    every = int(config.eval.every)
    do_eval = int(config.eval.num_eval) > 0
    t0 = time.perf_counter() - float(record["wall_time"])
    last_saved = start

    def save(step: int) -> None:
        record["wall_time"] = time.perf_counter() - t0
        ckpt.save(step, state, record)

    bar = tqdm.tqdm(range(start, total), initial=start, total=total, disable=not progress,
                    desc="distill", dynamic_ncols=True)
    try:
        with _StopSignals() as stop:
            for it in bar:
                t_step = time.perf_counter()
                new_state, metrics = setup.step_fn(state)
                scalars = {name: float(v) for name, v in jax.device_get(metrics).items()}
                step = it + 1
                _check_diverged(config, scalars, step, last_saved, ckpt.directory)
                state = new_state
                scalars["seconds_per_iteration"] = time.perf_counter() - t_step
                bar.set_postfix(loss=f"{scalars['loss']:.4g}")
                if step % int(config.log_every) == 0 or step == total:
                    writer.write(step, scalars)
                    logging.info("iteration %d/%d loss %.5g (%.3f s/it)", step, total,
                                 scalars["loss"], scalars["seconds_per_iteration"])
                for callback in callbacks:
                    callback(step, state, scalars)
                if do_eval and every > 0 and step % every == 0 and step != total:
                    _evaluate_and_record(config, setup, state, dataset, workdir, record, writer)
                if step % int(config.checkpoint_every) == 0 or step == total or stop.signum:
                    save(step)
                    last_saved = step
                if stop.signum:
                    name = signal.Signals(stop.signum).name
                    raise Interrupted(f"stopped by {name} at iteration {step}; the checkpoint is "
                                      f"saved in {ckpt.directory}: rerun the same command to "
                                      f"resume", stop.signum)
    finally:
        bar.close()
        writer.close()
    return _finish(config, setup, state, dataset, workdir, record, do_eval)


def _evaluate_and_record(config, setup, state, dataset, workdir, record, writer) -> None:
    step = int(state.step)
    t = time.perf_counter()
    results = _evaluate(config, setup, state, dataset)
    seconds = time.perf_counter() - t
    record["history"].append({"step": step, "results": results, "seconds": seconds})
    first = next(iter(results.values()))
    for name, r in results.items():
        logging.info("iteration %d: %s accuracy %.2f +- %.2f (%d seeds, %.0f s)", step, name,
                     r["mean"], r["std"], len(r["accs"]), seconds)
    if writer is not None:
        writer.write(step, {f"eval/{name}/{stat}": r[stat]
                            for name, r in results.items() for stat in ("mean", "std")})
    if record["best"] is None or first["mean"] > record["best"]["mean"]:
        record["best"] = {"step": step, "mean": first["mean"], "std": first["std"],
                          "results": results}
        if sharding.is_main_process():
            _export(os.path.join(workdir, "synset_best.npz"), setup, state, dataset,
                    step=step, results=results)


def _evaluated_before(config: Any, workdir: str, step: int) -> dict | None:
    """results.json of an earlier run of this workdir that already evaluated iteration
    ``step`` on the models asked (a rerun of a finished workdir re-exports, not re-trains)."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    models_asked = {m.strip() for m in config.eval.models.split(",") if m.strip()}
    history = results.get("history") or []
    if (results.get("iterations") == step and history and history[-1]["step"] == step
            and set(history[-1]["results"]) == models_asked):
        return results
    return None


def _finish(config, setup, state, dataset, workdir, record, do_eval) -> dict:
    """Write the last export, pictures and results.json (process 0), then run the final
    evaluation if due and write results.json again; return the results. The checkpoint of
    the last iteration is already on disk."""
    main = sharding.is_main_process()
    step = int(state.step)
    last = os.path.join(workdir, "synset_last.npz")
    if main:
        _export(last, setup, state, dataset, step=step)
        _pictures(workdir, setup, state, dataset)
    if do_eval and (not record["history"] or record["history"][-1]["step"] != step):
        earlier = _evaluated_before(config, workdir, step)
        if earlier is not None:
            record["history"], record["best"] = earlier["history"], earlier["best"]
        else:
            _write_results(config, setup, state, workdir, record)
            try:
                _evaluate_and_record(config, setup, state, dataset, workdir, record, None)
            except Exception as e:
                raise EvaluationError(
                    f"the final evaluation failed ({configuration.one_line(e, 300)}); the "
                    f"distilled set is saved ({last}, iteration {step}, and its checkpoint): "
                    f"rerun the same command, or evaluate it alone with python -m "
                    f"fred_jax.evaluate --synset {last} --models {config.eval.models} "
                    f"--num_eval {config.eval.num_eval} --epochs {config.eval.epochs}") from e
    return _write_results(config, setup, state, workdir, record)


def _write_results(config, setup, state, workdir, record) -> dict:
    """results.json (process 0) from the record so far; returns the results."""
    c, n, k, ch = (int(v) for v in state.learnable["coeffs"].shape)
    d = math.prod(setup.image_shape[:-1])
    final = record["history"][-1]["results"] if record["history"] else {}
    results = {
        "dataset": config.dataset,
        "objective": config.objective,
        "parameterization": config.parameterization,
        "transform": setup.transform,
        "ipc": int(config.ipc),
        "k": k,
        "instances_per_class": n,
        "budget_parameters": c * n * k * ch,
        "budget_limit": c * int(config.ipc) * d * ch,
        "iterations": int(state.step),
        "accuracy": final,
        "best": record["best"],
        "history": record["history"],
        "config_changes": record.get("changes", []),
        "wall_time_seconds": record["wall_time"],
    }
    if sharding.is_main_process():
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results
