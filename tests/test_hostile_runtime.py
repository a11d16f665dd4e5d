"""The run under hostile conditions: divergence just under an absolute guard, two runs on one
workdir, stale locks, bad config files, Ctrl-C before the loop, a bad ``evaluate --out``,
damaged checkpoints. Where the message is the point the command runs as a subprocess
(``tests/toy_main.py``: ``fred_jax.main`` on the toy dataset of ``test_train``) and must end
with one line and no traceback.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from fred_jax import checkpoint, failures, train
import test_train
from test_faults import quiet, steps
from test_train import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_MAIN = os.path.join(ROOT, "tests", "toy_main.py")
TOY_CONFIG = os.path.join(ROOT, "tests", "toy_config.py")
dataset = test_train.dataset  # module fixture


def command(*args, env=None, timeout=300):
    """Run ``args`` (after the interpreter) from the repository root: (exit status, stderr)."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stderr


def toy_main(workdir, *flags, env=None):
    return command(TOY_MAIN, "--config", TOY_CONFIG, f"--workdir={workdir}", *flags, env=env)


def own_lines(stderr):
    """stderr without absl's log lines (``I1208 01:02:03...``) and progress bars."""
    return [line for line in stderr.splitlines() if line.strip() and not
            re.match(r"[IWEF]\d{4} \d\d:\d\d", line) and not line.startswith("distill:")]


def assert_one_line(rc, stderr, *parts):
    assert rc != 0 and "Traceback" not in stderr, stderr[-3000:]
    lines = own_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    """A finished toy run (checkpoints 2 and 4), made as toy_config.py makes it."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train.run(quiet(), str(workdir), dataset=dataset, progress=False)
    return workdir


@pytest.fixture
def workdir(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


# ----------------------------------------------------------------------------- divergence

# The quickstart (configs/quickstart.py without baseline and evaluation, 200 iterations) at the
# default lr=1e6 and at lr=5e9, which ended with exit 0 under the absolute guard of 1e6 (largest
# value 8.5e5), and 40 iterations at lr=1e8 (its loss as high as at 5e9): iterations' loss and
# learnable RMS; the initial RMS is 1.916.
QUICKSTART_RMS0 = 1.916
QUICKSTART_DEFAULT = [  # (iteration, loss, rms)
    (1, 58.8, 8.37), (2, 483.3, 13.79), (3, 281.4, 17.26), (4, 206.1, 19.23), (5, 144.1, 20.33),
    (6, 150.3, 20.92), (7, 111.8, 21.26), (8, 95.9, 21.46), (9, 98.1, 21.56), (10, 75.8, 21.61),
    (11, 61.9, 21.64), (12, 70.0, 21.66), (41, 37.4, 21.54), (81, 20.4, 21.70),
    (121, 27.0, 21.91), (161, 26.6, 22.14), (200, 18.9, 22.30)]
QUICKSTART_5E9 = [(1, 58.8, 40716.0), (2, 640.7, 61074.0), (200, 499.7, 81446.0)]
QUICKSTART_1E8 = [(1, 58.8, 814.3), (40, 472.8, 1631.4)]


def test_divergence_rule_on_the_measured_quickstart_runs():
    start = failures.loss_start([loss for _, loss, _ in QUICKSTART_DEFAULT])
    for i, (step, loss, rms) in enumerate(QUICKSTART_DEFAULT):
        known = failures.loss_start([row[1] for row in QUICKSTART_DEFAULT[:i]])
        assert failures.divergence(loss, rms * 10, rms, initial_rms=QUICKSTART_RMS0,
                                   start=known) is None, step
    assert start is not None and max(loss for _, loss, _ in QUICKSTART_DEFAULT[10:]) < start
    what = failures.divergence(58.8, 4.3e5, 40716.0, initial_rms=QUICKSTART_RMS0, start=None)
    assert what.startswith("learnable values grew 2.13e+04x (RMS 4.07e+04, initially 1.92")
    for step, loss, rms in QUICKSTART_1E8:  # from the first iteration on
        assert "learnable values grew" in failures.divergence(
            loss, rms * 10, rms, initial_rms=QUICKSTART_RMS0, start=None), step


def test_divergence_under_the_old_absolute_guard_stops_naming_lr(dataset, tmp_path):
    """lr=100 on the toy run: its largest value stays under 1e6 for 12 iterations (the old
    guard let it finish), while its values grow far beyond their start."""
    config = small_config(lr=100.0, num_iterations=12, **{"eval.num_eval": 0})
    with pytest.raises(train.NonFiniteLossError,
                       match=r"^learnable values grew .*x \(RMS .*; limit "
                             r"config\.divergence_growth=300\) at iteration "
                             r"\d+: the synthetic set diverged and this state was not saved; "
                             r"lower the learning rate \(config.lr=100\) in a new --workdir, or "
                             r"resume from the last good checkpoint \(iteration \d+ in .*"
                             r"--config.lr=<lower> --allow_changes=lr$"):
        train.run(config, str(tmp_path), dataset=dataset, progress=False)
    assert not (tmp_path / "synset_last.npz").exists()


def test_loss_far_beyond_its_start_stops_the_run():
    losses = [2.0, 2.2, 1.9, 2.1, 2.0, 1.8, 2.3, 2.0, 2.1, 1.9]
    start = failures.loss_start(losses)
    assert start == pytest.approx(2.0) and failures.loss_start(losses[:9]) is None
    assert failures.divergence(19.0, 3.0, 1.0, initial_rms=1.0, start=start) is None
    assert "loss 21 is 10.5x its start (2, median of the first 10 iterations" in \
        failures.divergence(21.0, 3.0, 1.0, initial_rms=1.0, start=start)
    assert failures.divergence(float("nan"), 3.0, 1.0, initial_rms=1.0, start=None) == \
        "non-finite loss (nan)"
    assert failures.divergence(1.0, float("inf"), 1.0, initial_rms=1.0, start=None) == \
        "non-finite learnable values"


def test_default_lr_runs_are_not_flagged(dataset, tmp_path):
    """30 iterations at the toy config's default rates, FreD and pixels: no false alarm, and
    the loss's start is recorded in the checkpoints (a resumed run keeps it)."""
    for name, fields in [("fred", {}), ("pixel", {"parameterization": "pixel"})]:
        config = small_config(num_iterations=30, checkpoint_every=15,
                              **{"eval.num_eval": 0, **fields})
        results = train.run(config, str(tmp_path / name), dataset=dataset, progress=False)
        assert results["iterations"] == 30
        ckpt = checkpoint.Checkpointer(os.path.join(tmp_path, name, "checkpoints"))
        try:
            assert len(ckpt.read_record(30)["first_losses"]) == failures.LOSS_START
        finally:
            ckpt.close()


# ----------------------------------------------------------------------------- workdir lock


def _lock(workdir, pid, host):
    with open(os.path.join(workdir, "run.lock"), "w") as f:
        json.dump({"pid": pid, "host": host, "started": time.time(), "token": "t"}, f)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_on_a_held_workdir_stops_at_once(workdir):
    """This process holds the lock (as a run would); the command on the same workdir stops
    before touching it."""
    _lock(workdir, os.getpid(), socket.gethostname())
    before = sorted(os.listdir(workdir / "checkpoints"))
    rc, err = toy_main(workdir, "--config.num_iterations=6", "--allow_changes=num_iterations")
    assert_one_line(rc, err, f"{workdir} is in use by another run (pid {os.getpid()} on "
                             f"{socket.gethostname()}", f"delete {workdir}/run.lock")
    assert sorted(os.listdir(workdir / "checkpoints")) == before
    assert (workdir / "run.lock").exists()  # still the holder's


def test_of_runs_starting_together_exactly_one_gets_the_lock(tmp_path):
    code = ("import sys, time; from fred_jax import workdir_lock\n"
            "try:\n    workdir_lock.acquire(sys.argv[1])\n"
            "except workdir_lock.WorkdirLocked as e:\n    sys.exit(str(e))\n"
            "time.sleep(3)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1, 1, 1], results
    assert all("is in use by another run" in err for rc, err in results if rc), results


def test_stale_lock_is_taken_over_and_released(dataset, workdir, caplog):
    _lock(workdir, _dead_pid(), socket.gethostname())
    caplog.set_level("WARNING")
    results = train.run(quiet(num_iterations=5), str(workdir), dataset=dataset, progress=False,
                        allow_changes=["num_iterations"])
    assert results["iterations"] == 5
    assert any("taking over the lock of a run that no longer runs" in r.getMessage()
               for r in caplog.records)
    assert not (workdir / "run.lock").exists()


def test_lock_of_another_host_is_refused(dataset, workdir):
    _lock(workdir, 1, "other-host")
    with pytest.raises(train.WorkdirError, match=r"in use by another run \(pid 1 on other-host, "
                                                 r"since .*: wait for it to end or use another "
                                                 r"--workdir; if no run uses it any more, "
                                                 r"delete .*run.lock"):
        train.run(quiet(), str(workdir), dataset=dataset, progress=False)
    assert steps(workdir) == [2, 4]


def test_lock_is_released_when_the_run_fails(dataset, tmp_path):
    def boom(step, state, metrics):
        assert (tmp_path / "run.lock").exists()  # held while the run runs
        if step == 3:
            raise KeyError("boom")

    with pytest.raises(KeyError):
        train.run(quiet(), str(tmp_path), dataset=dataset, callbacks=[boom], progress=False)
    assert not (tmp_path / "run.lock").exists()


# ----------------------------------------------------------------------------- messages


def test_config_file_errors_are_one_line(tmp_path):
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    (tmp_path / "noget.py").write_text("x = 1\n")
    (tmp_path / "raises.py").write_text("def get_config():\n    return undefined_name\n")
    (tmp_path / "folder.py").mkdir()
    cases = [("missing.py", "no such file; give a config file such as configs/quickstart.py"),
             ("folder.py", "not a file; give a config file"),
             ("syntax.py", "syntax error at line 1 (invalid syntax); fix the file"),
             ("noget.py", "defines no get_config(); a config file returns its ConfigDict"),
             ("raises.py", "get_config() failed (NameError: name 'undefined_name' is not "
                           "defined); fix the file")]
    procs = [subprocess.Popen([sys.executable, "-m", "fred_jax.main", "--config",
                               str(tmp_path / name), f"--workdir={tmp_path / 'run'}"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True) for name, _ in cases]
    verbose = subprocess.Popen([sys.executable, "-m", "fred_jax.main", "--config",
                                str(tmp_path / "syntax.py"), f"--workdir={tmp_path / 'run'}",
                                "--verbose"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for (name, message), proc in zip(cases, procs):
        err = proc.communicate(timeout=300)[1]
        assert_one_line(proc.returncode, err, f"--config {tmp_path / name}: {message}")
    err = verbose.communicate(timeout=300)[1]
    assert verbose.returncode != 0 and "Traceback" in err and "SyntaxError" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_signal_before_the_loop_is_one_line(tmp_path, name):
    rc, err = toy_main(tmp_path / "run", env={"FRED_TEST_SIGNAL": name})
    line = assert_one_line(rc, err, f"interrupted by {name}; no checkpoint was written: rerun "
                                    f"the same command to start again")
    assert rc == 128 + getattr(signal, name), line
    assert not (tmp_path / "run" / "run.lock").exists()


def test_evaluate_checks_out_before_anything_else(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    missing = tmp_path / "missing_set.npz"  # read only after --out is checked
    for out, message in [(tmp_path / "a_folder", "a folder; give a file name"),
                         (tmp_path / "a_file" / "r.json", f"{tmp_path}/a_file is a file, not a "
                                                          f"folder; give another --out")]:
        rc, err = command("-m", "fred_jax.evaluate", "--synset", str(missing), "--out", str(out))
        assert_one_line(rc, err, f"--out {out}: {message}")


def _damage(folder):
    """Overwrite every data file of a checkpoint's state with random bytes of the same size."""
    rng = np.random.default_rng(0)
    data = os.path.join(folder, "state", "d")
    for name in os.listdir(data):
        path = os.path.join(data, name)
        with open(path, "r+b") as f:
            f.write(rng.integers(0, 256, os.path.getsize(path), dtype=np.uint8).tobytes())


def test_damaged_checkpoint_is_one_line_naming_the_file(workdir):
    """Random bytes in the newest checkpoint's data: orbax's failure printed tracebacks of a
    closed event loop (not every time); the checksums name the file before orbax reads it."""
    _damage(workdir / "checkpoints" / "4")
    rc, err = toy_main(workdir)
    assert rc == 0 and "Traceback" not in err and "exception" not in err.lower(), err[-3000:]
    warnings = [line for line in err.splitlines() if "skipped damaged checkpoint" in line]
    assert len(warnings) == 1 and f"skipped damaged checkpoint {workdir}/checkpoints/4 (step 4: "\
        f"{workdir}/checkpoints/4/state/d/" in warnings[0], err[-3000:]
    assert steps(workdir) == [2, 4]


def test_a_run_whose_checkpoints_are_all_damaged_is_not_restarted(workdir):
    """The first rerun stops (nothing reads back); the next one used to start again from
    iteration 0 and exit 0."""
    _damage(workdir / "checkpoints" / "2")
    _damage(workdir / "checkpoints" / "4")
    first = toy_main(workdir)
    again = toy_main(workdir)  # the lost run is not silently started again
    assert again[0] != 0 and steps(workdir) == [], again[1][-3000:]
    assert_one_line(*again, f"every checkpoint of {workdir}/checkpoints was damaged",
                    f"move {workdir}/checkpoints.skipped away to start this one again")
    assert_one_line(*first, f"no checkpoint in {workdir}/checkpoints reads back (step 4: ",
                    f"move {workdir}/checkpoints.skipped away to start this one again")
    assert len([line for line in first[1].splitlines()
                if "skipped damaged checkpoint" in line]) == 2


def test_divergence_factors_are_config_fields():
    """The factors are the defaults of two free config fields (a long run that outgrows them
    can resume with a larger one); 0 turns a rule off; anything in (0, 1] is refused."""
    from fred_jax import checks, configuration, failures, provenance

    c = configuration.defaults()
    assert (c.divergence_growth, c.divergence_loss_growth) == (failures.GROWTH,
                                                                failures.LOSS_GROWTH)
    assert {"divergence_growth", "divergence_loss_growth"} <= set(provenance.FREE_FIELDS)
    grown = dict(loss=1.0, largest=400.0, rms=400.0, initial_rms=1.0, start=1.0)
    assert "config.divergence_growth=300" in failures.divergence(**grown)
    assert failures.divergence(**grown, growth=1000.0) is None
    assert failures.divergence(**grown, growth=0.0) is None
    risen = dict(loss=50.0, largest=1.0, rms=1.0, initial_rms=1.0, start=1.0)
    assert "config.divergence_loss_growth=10" in failures.divergence(**risen)
    assert failures.divergence(**risen, loss_growth=0.0) is None
    c.divergence_growth = 0.5
    with pytest.raises(checks.ConfigError, match="divergence_growth"):
        configuration.validate(c)
