"""Fault injection: every failure stops with one clear line and loses no completed work.

Tiny runs on the toy dataset of ``test_train`` (3 classes of 8x8 images, MLP, no evaluation
unless a test needs it). One finished workdir (4 iterations, checkpoints 2 and 4) is built once
and copied into each test that damages or reruns it.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax.numpy as jnp
import numpy as np
import pytest

from fred_jax import checkpoint, cli, configuration, objectives, synset, train
import test_train
from test_train import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
dataset = test_train.dataset  # module fixture: 3 toy classes of 8x8 images


def quiet(**overrides):
    """4 iterations, checkpoints at 2 and 4, no evaluation."""
    return small_config(**{"num_iterations": 4, "eval.num_eval": 0, **overrides})


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train.run(quiet(), str(workdir), dataset=dataset, progress=False)
    return workdir


@pytest.fixture
def workdir(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def steps(workdir):
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        return ckpt.all_steps()
    finally:
        ckpt.close()


def export_step(path):
    return synset.load(path)[1]["step"]


def no_compute(monkeypatch):
    """Make building the distillation (init, jit) fail loudly: checks must come before it."""
    def fail(*args, **kwargs):
        raise AssertionError("the run started computing")
    monkeypatch.setattr(train, "create", fail)


# ----------------------------------------------------------------------------- 1. divergence


def test_nan_state_with_finite_loss_is_caught_before_it_is_saved(dataset, workdir, monkeypatch):
    real_build = objectives.build

    def poisoned(config, problem):  # NaN coefficients after the update; the loss stays finite
        objective = real_build(config, problem)

        def update(learnable, opt_state, key, apply):
            learnable, opt_state, metrics = objective.update(learnable, opt_state, key, apply)
            return {**learnable, "coeffs": learnable["coeffs"] * jnp.nan}, opt_state, metrics

        return dataclasses.replace(objective, update=update)

    monkeypatch.setattr(objectives, "build", poisoned)
    with pytest.raises(train.NonFiniteLossError,
                       match=r"non-finite learnable values at iteration 5: .* not saved.*"
                             r"iteration 4 in .*checkpoints"):
        train.run(quiet(num_iterations=5), str(workdir), dataset=dataset, progress=False,
                  allow_changes=["num_iterations"])
    assert steps(workdir) == [2, 4]  # nothing non-finite checkpointed
    last = synset.load(workdir / "synset_last.npz")[0]
    assert np.isfinite(np.asarray(last.coeffs)).all() and export_step(
        workdir / "synset_last.npz") == 4


@pytest.mark.parametrize("fields, message", [
    ({"lr": float("inf")}, r"config.lr: must be > 0 and <= 1e\+12, got inf"),
    ({"lr": 1e30}, r"config.lr: must be > 0 and <= 1e\+12"),
    ({"eval.lr": float("nan")}, r"config.eval.lr: must be > 0"),
    ({"eval.models": ""}, r"config.eval.models: no model to evaluate"),
    ({"eval.models": " , "}, r"config.eval.models: no model to evaluate"),
    ({"k": 0}, r"config.k: must be >= 1 kept coefficient per channel, got 0"),
])
def test_validation_refuses_absurd_values(dataset, fields, message):
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.validate(small_config(**fields), dataset=dataset)


def _export(path, coeffs):
    c, n, k, ch = coeffs.shape
    indices = np.tile(np.arange(k), (c, 1))
    synset.save(path, synset.SynSet(coeffs=coeffs, indices=indices, transform="dct",
                                    image_shape=(8, 8, 1)),
                mean=[0.0], std=[1.0], dataset="toy")


def test_evaluate_and_visualize_refuse_a_non_finite_set(tmp_path, capsys):
    coeffs = np.ones((3, 4, 16, 1), np.float32)
    coeffs[1, 2, 3, 0] = np.nan
    _export(tmp_path / "nan.npz", coeffs)
    with pytest.raises(ValueError, match="nan.npz: the synthetic set holds non-finite"):
        cli.load_export(str(tmp_path / "nan.npz"))
    with pytest.raises(SystemExit) as exit_:
        cli.visualize_command(["--synset", str(tmp_path / "nan.npz"), "--out",
                               str(tmp_path / "png")])
    assert exit_.value.code == 1
    assert "non-finite coefficients" in capsys.readouterr().err
    assert not (tmp_path / "png" / "synset_images.png").exists()


# ----------------------------------------------------------------------------- 2. provenance


def test_rerun_with_other_settings_stops_before_compute(dataset, workdir, monkeypatch):
    before = (workdir / "config.json").read_text()
    no_compute(monkeypatch)
    with pytest.raises(train.WorkdirError,
                       match=r"checkpoint at iteration 4\) made with other settings: "
                             r"dm.batch_real: stored 8, now 4; lr: stored 1.0, now 2.0; .*"
                             r"--allow_changes=dm.batch_real,lr"):
        train.run(quiet(lr=2.0, **{"dm.batch_real": 4}), str(workdir), dataset=dataset,
                  progress=False)
    with pytest.raises(train.WorkdirError, match=r"k: stored 16, now 8; these define the "
                                                 r"stored set: use another --workdir"):
        train.run(quiet(k=8), str(workdir), dataset=dataset, progress=False,
                  allow_changes=["k"])
    assert (workdir / "config.json").read_text() == before
    assert steps(workdir) == [2, 4]


def test_workdir_finished_beyond_num_iterations_is_reported(dataset, workdir, monkeypatch):
    no_compute(monkeypatch)
    with pytest.raises(train.WorkdirError, match=r"run at iteration 4, beyond num_iterations=2:"
                                                 r" rerun with --config.num_iterations=4"):
        train.run(quiet(num_iterations=2), str(workdir), dataset=dataset, progress=False,
                  allow_changes=["num_iterations"])
    assert export_step(workdir / "synset_last.npz") == 4
    assert json.loads((workdir / "config.json").read_text())["num_iterations"] == 4


def test_more_iterations_need_the_flag_and_are_recorded(dataset, workdir):
    with pytest.raises(train.WorkdirError, match=r"num_iterations: stored 4, now 6"):
        train.run(quiet(num_iterations=6), str(workdir), dataset=dataset, progress=False)
    results = train.run(quiet(num_iterations=6), str(workdir), dataset=dataset, progress=False,
                        allow_changes=["num_iterations"])
    assert results["iterations"] == 6 and steps(workdir)[-1] == 6
    assert results["config_changes"] == [{"step": 4, "fields": {"num_iterations": [4, 6]}}]
    assert json.loads((workdir / "config.json").read_text())["num_iterations"] == 6


# ----------------------------------------------------------------------------- 3. final outputs


def test_final_evaluation_failure_keeps_checkpoint_and_exports(dataset, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(train, "_evaluate", boom)
    config = quiet(num_iterations=3, **{"eval.num_eval": 1})
    with pytest.raises(train.EvaluationError,
                       match=r"final evaluation failed \(out of memory\); .*synset_last.npz, "
                             r"iteration 3.* python -m fred_jax.evaluate --synset "
                             r".*synset_last.npz --models MLP --num_eval 1 --epochs 2"):
        train.run(config, str(tmp_path), dataset=dataset, progress=False)
    assert steps(tmp_path)[-1] == 3
    assert export_step(tmp_path / "synset_last.npz") == 3
    assert (tmp_path / "synset_images.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["iterations"] == 3


# ----------------------------------------------------------------------------- 4. fallback


def test_damaged_newest_checkpoints_are_skipped(dataset, workdir, caplog):
    for root, _, files in os.walk(workdir / "checkpoints" / "4" / "state"):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    (workdir / "checkpoints" / "6").mkdir()  # an empty step folder
    caplog.set_level("WARNING")
    results = train.run(quiet(), str(workdir), dataset=dataset, progress=False)
    skipped = [r.getMessage() for r in caplog.records if "skipped damaged checkpoint" in
               r.getMessage()]
    assert any("/checkpoints/4 (step 4:" in m for m in skipped), skipped
    assert results["iterations"] == 4 and steps(workdir) == [2, 4]  # 2 -> 4 again
    assert sorted(os.listdir(str(workdir / "checkpoints") + ".skipped"))[0].startswith("4-")


# ----------------------------------------------------------------------------- 5. writes, signals


def test_unwritable_checkpoint_folder_fails_fast_with_the_path(dataset, tmp_path, monkeypatch):
    real_makedirs = os.makedirs

    def makedirs(path, *args, **kwargs):  # what a read-only folder does to orbax
        if "orbax-checkpoint-tmp" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", makedirs)
    t = time.perf_counter()
    with pytest.raises(checkpoint.CheckpointWriteError,
                       match=r"cannot write checkpoint 2 into .*/checkpoints \(.*Permission "
                             r"denied.*\); free space or fix the permissions"):
        train.run(quiet(), str(tmp_path), dataset=dataset, progress=False)
    assert time.perf_counter() - t < 60
    time.sleep(0.5)
    waiting = [t for t in threading.enumerate() if "Signaling" in type(t).__name__]
    assert not waiting  # such threads kept the process from exiting for 300 s


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_stops(dataset, tmp_path, signum):
    def send_at_3(step, state, metrics):
        if step == 3:
            os.kill(os.getpid(), signum)

    with pytest.raises(train.Interrupted, match=r"stopped by SIGTERM at iteration 3; the "
                                                r"checkpoint is saved") as stopped:
        train.run(quiet(), str(tmp_path), dataset=dataset, callbacks=[send_at_3],
                  progress=False)
    assert stopped.value.exit_status == 128 + signum
    assert steps(tmp_path) == [2, 3]  # 3 is not a regular checkpoint step
    assert signal.getsignal(signum) is not None and signal.getsignal(signum) != signal.SIG_IGN


# ----------------------------------------------------------------------------- 6. metrics


def test_torn_last_metrics_line_is_dropped_on_resume(dataset, workdir):
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    train.run(quiet(), str(workdir), dataset=dataset, progress=False)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]


# ----------------------------------------------------------------------------- 7. messages


def test_foreign_export_files_get_one_clear_line(tmp_path):
    (tmp_path / "notes.npz").write_text("not a zip")
    np.save(tmp_path / "coeffs.npy", np.ones(3))
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    for name, message in [
            ("notes.npz", "notes.npz: not an .npz archive, expected an export .npz"),
            ("coeffs.npy", "coeffs.npy: a .npy array, expected an export .npz"),
            ("other.npz", r"other.npz: an .npz without the export fields \['coeffs', 'indices',"
                          r" 'labels', 'meta'\] \(has \['x'\]\)"),
            ("missing.npz", "missing.npz: no such file")]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            cli.load_export(str(tmp_path / name))


def test_run_command_one_line_unless_verbose(capsys):
    def workdir_error():
        raise train.WorkdirError("runs/x holds a run made with\nother settings")

    with pytest.raises(SystemExit) as exit_:
        configuration.run_command(workdir_error, verbose=False)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err == "error: runs/x holds a run made with other settings\n"
    with pytest.raises(SystemExit):
        configuration.run_command(lambda: {}["meta"], verbose=False)
    assert capsys.readouterr().err == ("error: KeyError: 'meta' (rerun with --verbose for the "
                                       "traceback)\n")
    with pytest.raises(train.WorkdirError):
        configuration.run_command(workdir_error, verbose=True)


def test_prepared_dataset_needs_no_original_files(tmp_path, monkeypatch):
    config = small_config(dataset="mnist", data_dir=str(tmp_path), k=49)  # no mnist/ there
    monkeypatch.setattr(configuration, "_prepared", lambda name: True)
    configuration.validate(config)
    monkeypatch.setattr(configuration, "_prepared", lambda name: False)
    with pytest.raises(configuration.ConfigError, match=f"{tmp_path}/mnist .* missing or empty"):
        configuration.validate(config)


def test_cli_help_exits_0_and_errors_are_one_line(tmp_path):
    np.save(tmp_path / "set.npy", np.ones(3))
    commands = [[m, "--help"] for m in ("main", "evaluate", "experts", "visualize")]
    commands.append(["evaluate", "--synset", str(tmp_path / "set.npy")])
    procs = [subprocess.Popen([sys.executable, "-m", f"fred_jax.{m}", *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m, *args in commands]
    outs = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for (m, *args), (out, err, rc) in zip(commands[:4], outs):
        assert rc == 0 and "verbose" in out, (m, rc, err[-500:])
    out, err, rc = outs[4]
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"error: {tmp_path}/set.npy: images without labels; "
                                            f"pass the labels file (e.g. labels_best.pt beside "
                                            f"images_best.pt)")
