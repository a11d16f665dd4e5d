"""Two-process jax.distributed run on localhost (CPU, 2 devices per process): the multi-host
path of fred_jax.sharding end to end (tests/multihost_worker.py is one process)."""

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


def test_two_processes_on_localhost():
    port = _free_port()
    base = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "SLURM_JOB_ID", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "--local-devices", "2"],
            env={**base, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                 "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
            results.append(json.loads(line[len("RESULT "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    total = float(sum(range(16 * 3)))
    for i, r in enumerate(results):
        assert r["initialised"] and r["process_count"] == 2 and r["process_index"] == i
        assert r["main"] == (i == 0)
        assert r["global_devices"] == 4 and r["local_devices"] == 2
        assert r["slice"] == [8 * i, 8 * i + 8]  # each host holds its half of the rows
        assert r["total"] == total and r["psum"] == total  # cross-process reduction
        assert r["gathered"]
        assert r["norms"] == [2.0 * sum(v * v for v in range(3 * k, 3 * k + 3)) for k in range(5)]
