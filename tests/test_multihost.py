"""Two-process jax.distributed run on localhost (CPU, 2 devices per process): fred_jax.main
(distillation, evaluation, orbax checkpoints and a resume on a mesh over both processes, only
process 0 writing outputs) and the multi-host path of fred_jax.sharding end to end
(tests/multihost_worker.py is one process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).parent / "multihost_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """
from fred_jax import configuration


def get_config():
    config = configuration.defaults()
    config.update_from_flattened_dict({
        "dataset": "mnist", "data_dir": DATA_DIR, "ipc": 1, "k": 16, "model": "MLP",
        "lr": 1.0, "lr_convention": "orthonormal", "dsa_strategy": "", "eval.dsa": False,
        "dm.batch_real": 4, "num_iterations": 2, "log_every": 1, "checkpoint_every": 2,
        "eval.models": "MLP", "eval.num_eval": 2, "eval.epochs": 1, "eval.batch_size": 8,
        "eval.every": 0})
    return config
"""

OUTPUTS = {"config.json", "metrics.jsonl", "results.json", "synset_best.npz", "synset_last.npz",
           "synset_images.png", "synset_masks.png"}


def test_two_processes_on_localhost(tmp_path):
    (tmp_path / "data" / "mnist").mkdir(parents=True)  # validation wants the data folder;
    (tmp_path / "data" / "mnist" / "file").write_text("x")  # the worker supplies a toy set
    config = tmp_path / "config.py"
    config.write_text(CONFIG.replace("DATA_DIR", repr(str(tmp_path / "data"))))
    workdir = tmp_path / "run"
    port = _free_port()
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "SLURM_JOB_ID", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--local-devices", "2", "--config", str(config),
             "--workdir", str(workdir)],
            env={**base, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                 "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results, printed = [], []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
            results.append(json.loads(line[len("RESULT "):]))
            printed.append("outputs in" in out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # fred_jax.main: only process 0 wrote (and printed) outputs, once; the second run resumed
    assert OUTPUTS <= set(results[0]["written"]) and results[1]["written"] == []
    assert printed == [True, False]
    events = {p for p in results[0]["written"] if p.startswith("tensorboard")}
    assert len(events) == 2 and len(os.listdir(workdir / "tensorboard")) == 2  # one a run
    with open(workdir / "metrics.jsonl") as f:
        assert [row["step"] for row in map(json.loads, f) if "loss" in row] == [1, 2, 3, 4]
    final = json.loads((workdir / "results.json").read_text())
    assert final["iterations"] == 4 and len(final["accuracy"]["MLP"]["accs"]) == 2
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]

    total = float(sum(range(16 * 3)))
    for i, r in enumerate(results):
        assert r["initialised"] and r["process_count"] == 2 and r["process_index"] == i
        assert r["main"] == (i == 0)
        assert r["global_devices"] == 4 and r["local_devices"] == 2
        assert r["slice"] == [8 * i, 8 * i + 8]  # each host holds its half of the rows
        assert r["total"] == total and r["psum"] == total  # cross-process reduction
        assert r["gathered"]
        assert r["norms"] == [2.0 * sum(v * v for v in range(3 * k, 3 * k + 3)) for k in range(5)]
