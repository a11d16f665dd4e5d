"""The distillation loop: init the frequency memory, run an objective, evaluate, checkpoint, export.

State: a pytree ``TrainState(learnable, opt_state, indices, step, key)`` where ``learnable`` is
``{"coeffs": [C, n, k, ch], **objective.extra_learnables}``. One jitted step folds the step into
the run key and hands it to the objective's ``update`` (``fred_jax.objectives``) together with
``apply``, the optax update of every learnable leaf (:mod:`fred_jax.optimizer`, which also
holds the unit of the coefficients' learning rate).

Each fact in one place: what is stored and trained (transform, k, learning rate) comes from
:func:`fred_jax.parameterization.resolve`; what is written into the workdir from
:mod:`fred_jax.outputs`; whether a workdir may be continued from :mod:`fred_jax.provenance`.

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

Failures (nothing lost, nothing silently wrong; the errors: :mod:`fred_jax.failures`):
- Divergence: after every update the step reports ``learnable_max_abs`` and ``learnable_rms``
  over every learnable leaf (NaN when any is NaN). A non-finite loss or value, values grown far
  beyond their initial RMS, or a loss far beyond its start (``fred_jax.failures.divergence``)
  stop the run with :class:`NonFiniteLossError` naming the learning rate field, before that
  state is checkpointed or exported.
- One run per workdir: a lock file (:mod:`fred_jax.workdir_lock`); a second run stops at once.
- Provenance: a rerun whose config differs from the stored run stops before loading data
  with :class:`WorkdirError` (:mod:`fred_jax.provenance`).
- The final checkpoint, exports and pictures are written before the final evaluation; its
  failure raises :class:`EvaluationError` saying how to rerun only the evaluation.
- SIGTERM/SIGINT: the loop finishes the iteration, saves a checkpoint and raises
  :class:`Interrupted` (a second signal stops at once); outside the loop (setting up, the final
  evaluation) they stop at once with :class:`Interrupted` saying what is saved.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Callable, Iterable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from fred_jax import (augment, checkpoint, configuration, data, evaluate, experts, failures,
                      models, objectives, optimizer, outputs, parameterization, provenance,
                      sharding, synset, workdir_lock)
from fred_jax.failures import (  # the errors of a run, also reachable as train.<Error>
    EvaluationError, Interrupted, NonFiniteLossError, StopSignals, WorkdirError, check_diverged)
from fred_jax.workdir_lock import WorkdirLocked

PyTree = Any
Callback = Callable[[int, "TrainState", dict], None]


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
    validation: tuple[np.ndarray, np.ndarray] | None = None  # held-out real train images


# ----------------------------------------------------------------------------- set-up


def create(config: Any, dataset: Any, mesh: Any = None) -> Setup:
    """Initial state (real-image init, EVR masks), objective and the jitted step.

    mesh: a ``jax.sharding.Mesh`` (:func:`fred_jax.sharding.mesh_for`) or None for one device.
    With a mesh the state, the real data and the step's inputs and outputs are replicated over
    it (the objective shards its parallel axis inside the step).
    """
    root = jax.random.PRNGKey(int(config.seed))
    image_shape = tuple(int(s) for s in dataset.image_shape)
    resolved = parameterization.resolve(config, image_shape[:-1])
    transform = resolved.transform
    init = synset.init(
        jax.random.fold_in(root, 0), dataset.x_train, dataset.y_train, dataset.num_classes,
        ipc=int(config.ipc), k=resolved.k, transform=transform, mask_kind=config.mask_kind,
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
    tx = optimizer.make_optimizer(
        resolved.lr, float(config.momentum),
        optimizer.coefficient_lr_scale(np.asarray(indices), image_shape, transform,
                                       resolved.lr_convention),
        dict(objective.extra_optimisers),
    )
    state = TrainState(
        learnable=learnable, opt_state=tx.init(learnable), indices=indices,
        step=jnp.zeros((), jnp.int32), key=jax.random.fold_in(root, 1),
    )
    apply = optimizer.make_apply(tx)

    def step(state: TrainState) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.key, state.step)
        learnable, opt_state, metrics = objective.update(
            state.learnable, state.opt_state, key, apply)
        leaves = [leaf.astype(jnp.float32) for leaf in jax.tree_util.tree_leaves(learnable)]
        largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf)) for leaf in leaves]))
        scale = jnp.where(largest > 0, largest, 1.0)  # no float32 overflow of the squares
        squares = sum(jnp.sum(jnp.square(leaf / scale)) for leaf in leaves)
        rms = scale * jnp.sqrt(squares / sum(leaf.size for leaf in leaves))
        metrics = {**metrics, "learnable_max_abs": largest, "learnable_rms": rms}
        return state.replace(learnable=learnable, opt_state=opt_state, step=state.step + 1), metrics

    if mesh is None:
        step_fn = jax.jit(step)
    else:
        state = sharding.replicate(state, mesh)
        step_fn = jax.jit(step, in_shardings=sharding.replicated(mesh),
                          out_shardings=sharding.replicated(mesh))
    return Setup(state=state, step_fn=step_fn, objective=objective, problem=problem,
                 transform=transform, image_shape=image_shape)


def learnable_rms(learnable: dict) -> float:
    """RMS over every value of every learnable leaf (as the step reports it)."""
    leaves = [np.asarray(leaf, np.float64) for leaf in sharding.to_host(
        jax.tree_util.tree_leaves(learnable))]
    return float(np.sqrt(sum(np.square(leaf).sum() for leaf in leaves) /
                         sum(leaf.size for leaf in leaves)))


def current_synset(setup: Setup, state: TrainState) -> synset.SynSet:
    """The synthetic set held by ``state``, as host arrays (also from a multi-host mesh)."""
    coeffs, indices = sharding.to_host((state.learnable["coeffs"], state.indices))
    return synset.SynSet(coeffs=coeffs, indices=indices, transform=setup.transform,
                         image_shape=setup.image_shape)


# ----------------------------------------------------------------------------- evaluation


def eval_lr(config: Any, state: TrainState) -> float:
    """Evaluation learning rate: a learned ``syn_lr`` leaf (TM) if the objective has one,
    else ``config.eval.lr``."""
    if "syn_lr" in state.learnable:
        return float(sharding.to_host(state.learnable["syn_lr"]))
    return float(config.eval.lr)


def _eval_models(config: Any) -> list[str]:
    return [m.strip() for m in config.eval.models.split(",") if m.strip()]


def _evaluate(config: Any, setup: Setup, state: TrainState, dataset: Any) -> dict[str, dict]:
    images = np.asarray(current_synset(setup, state).images())
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 2),
                             int(state.step))
    names = _eval_models(config)
    results = evaluate.evaluate_synset(
        key, images, None, dataset, models=names, epochs=int(config.eval.epochs),
        lr=eval_lr(config, state), num_eval=int(config.eval.num_eval),
        batch_size=int(config.eval.batch_size), dsa=bool(config.eval.dsa),
        dsa_strategy=config.dsa_strategy or augment.STRATEGY, dc_strategy=config.eval.dc_augment,
        conv_impl=config.eval.conv_impl, mesh=setup.problem.mesh, progress=False,
        extra_tests=None if setup.validation is None else {"validation": setup.validation},
    )
    return {name: {"mean": float(r["mean"]), "std": float(r["std"]),
                   "accs": [float(a) for a in r["accs"]], **r.get("extra_tests", {})}
            for name, r in results.items()}


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
    with StopSignals() as stop, workdir_lock.held(workdir, enabled=main):
        ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       max_to_keep=int(config.keep_checkpoints))
        try:
            return _run(config, workdir, dataset, mesh, ckpt, stop, callbacks,
                        progress and main, allow_changes)
        except KeyboardInterrupt:
            raise _interrupted(stop, ckpt) from None
        finally:
            ckpt.close()


def _interrupted(stop: StopSignals, ckpt: checkpoint.Checkpointer) -> Interrupted:
    """What a signal (or Ctrl-C) outside the loop's graceful stop leaves behind."""
    signum = stop.received or signal.SIGINT
    last = ckpt.latest_step()
    saved = (f"the checkpoint of iteration {last} in {ckpt.directory} is kept: rerun the same "
             f"command to resume" if last else
             "no checkpoint was written: rerun the same command to start again")
    return Interrupted(f"interrupted by {signal.Signals(signum).name}; {saved}", signum)


def _run(config, workdir, dataset, mesh, ckpt, stop, callbacks, progress, allow_changes) -> dict:
    """:func:`run` inside the workdir's lock: check the workdir, load, set up, loop."""
    main = sharding.is_main_process()
    ckpt.refuse_lost_run()
    changes = provenance.check_workdir(config, workdir, ckpt, allow_changes)
    if main:
        provenance.write_config(config, workdir)
    experts.prepare(config, progress=progress and main)  # TM: missing experts, or a clear stop
    if dataset is None:
        dataset = data.load(config.dataset, data_dir=config.data_dir or None, zca=config.zca,
                            norm_stats=config.norm_stats)
    validation = None
    if int(config.eval.validation_per_class):  # held out before the masks see the data
        dataset, validation = dataset.split_validation(int(config.eval.validation_per_class),
                                                       seed=int(config.seed))
    setup = dataclasses.replace(create(config, dataset, mesh), validation=validation)
    return _loop(config, workdir, dataset, setup, ckpt, callbacks, progress, changes, stop)


def _loop(config: Any, workdir: str, dataset: Any, setup: Setup, ckpt: checkpoint.Checkpointer,
          callbacks: Iterable[Callback], progress: bool,
          changes: dict[str, tuple[Any, Any]], stop: StopSignals) -> dict:
    """Resume from ``ckpt``, iterate with evaluation and checkpoints, write the outputs."""
    state = setup.state
    record = {"history": [], "best": None, "wall_time": 0.0, "changes": []}
    restored = ckpt.restore_latest(setup.state)
    if restored is not None:
        state, record = restored
        logging.info("resumed from %s at iteration %d", ckpt.directory, int(state.step))
    provenance.check_indices(state.indices, setup.state.indices, workdir)
    record["config"] = provenance.config_dict(config)
    if changes:
        record.setdefault("changes", []).append(
            {"step": int(state.step), "fields": {k: list(v) for k, v in changes.items()}})

    start, total = int(state.step), int(config.num_iterations)
    writer = (outputs.MetricsWriter(workdir, start) if sharding.is_main_process()
              else outputs.NoWriter())
    n, k = setup.state.learnable["coeffs"].shape[1:3]
    logging.info("distilling %s with %s/%s: %d classes x %d instances x k=%d, %d iterations",
                 config.dataset, config.parameterization, config.objective,
                 dataset.num_classes, n, k, total)
    every = int(config.eval.every)
    do_eval = int(config.eval.num_eval) > 0
    resolved = parameterization.resolve(config, setup.image_shape[:-1])
    initial_rms = learnable_rms(setup.state.learnable)
    first_losses = record.setdefault("first_losses", [])  # the loss's start (failures)
    t0 = time.perf_counter() - float(record["wall_time"])
    last_saved = start

    def save(step: int) -> None:
        record["wall_time"] = time.perf_counter() - t0
        ckpt.save(step, state, record)

    bar = tqdm.tqdm(range(start, total), initial=start, total=total, disable=not progress,
                    desc="distill", dynamic_ncols=True)
    try:
        stop.graceful = True
        for it in bar:
            t_step = time.perf_counter()
            new_state, metrics = setup.step_fn(state)
            scalars = {name: float(v) for name, v in jax.device_get(metrics).items()}
            step = it + 1
            check_diverged(scalars, step, initial_rms=initial_rms,
                           start=failures.loss_start(first_losses),
                           lr_field=resolved.lr_field, lr=resolved.lr,
                           last_saved=last_saved, directory=ckpt.directory,
                           growth=float(config.divergence_growth),
                           loss_growth=float(config.divergence_loss_growth))
            if len(first_losses) < failures.LOSS_START:
                first_losses.append(scalars["loss"])
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
        stop.graceful = False
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
            outputs.export(os.path.join(workdir, "synset_best.npz"),
                           current_synset(setup, state), state.learnable, dataset, step=step,
                           results=results)
    best_val = record.get("best_validation")
    if "validation" in first and (best_val is None or
                                  first["validation"]["mean"] > best_val["validation_mean"]):
        record["best_validation"] = {"step": step, "validation_mean": first["validation"]["mean"],
                                     "mean": first["mean"], "std": first["std"],
                                     "results": results}
        if sharding.is_main_process():
            outputs.export(os.path.join(workdir, "synset_best_validation.npz"),
                           current_synset(setup, state), state.learnable, dataset, step=step,
                           results=results)


def _finish(config, setup, state, dataset, workdir, record, do_eval) -> dict:
    """Write the last export, pictures and results.json (process 0), then run the final
    evaluation if due and write results.json again; return the results. The checkpoint of
    the last iteration is already on disk."""
    main = sharding.is_main_process()
    step = int(state.step)
    last = os.path.join(workdir, "synset_last.npz")
    if main:
        current = current_synset(setup, state)
        outputs.export(last, current, state.learnable, dataset, step=step)
        outputs.pictures(workdir, current, dataset)
    if do_eval and (not record["history"] or record["history"][-1]["step"] != step):
        earlier = outputs.evaluated_before(workdir, step, _eval_models(config))
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
    results = outputs.results(config, record, step=int(state.step), transform=setup.transform,
                              image_shape=setup.image_shape,
                              coeffs_shape=state.learnable["coeffs"].shape)
    if sharding.is_main_process():
        outputs.write_results(workdir, results)
    return results
