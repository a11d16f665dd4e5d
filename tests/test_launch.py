"""launch/ scripts in dry-run mode: the commands they would run, nothing touches a cloud."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).parent.parent / "launch"


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """Run a launch script with --dry-run; return its printed commands as argv lists."""
    proc = subprocess.run(["bash", str(LAUNCH / script), "--dry-run", *args],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": "/usr/bin:/bin", **env})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), proc.stdout
    return [shlex.split(line[2:]) for line in lines]


def test_tpu_create():
    (cmd,) = dry_run("tpu_create.sh", "fred", "us-central2-b", "v4-32", SPOT="1", PROJECT="p")
    assert cmd == ["gcloud", "compute", "tpus", "tpu-vm", "create", "fred",
                   "--zone=us-central2-b", "--accelerator-type=v4-32",
                   "--version=tpu-ubuntu2204-base", "--project=p", "--spot"]


def test_tpu_setup_copies_and_installs_on_every_worker():
    cmds = dry_run("tpu_setup.sh", "fred", "z", DATA_DIR="/data/fred")
    assert [c[:2] for c in cmds] == [["tar", "czf"]] + [["gcloud", "compute"]] * 3
    scp, ssh, data = cmds[1:]
    assert scp[4] == "scp" and "--worker=all" in scp and scp[6] == "fred:fred_jax_src.tar.gz"
    assert ssh[4] == "ssh" and "--worker=all" in ssh
    remote = [a for a in ssh if a.startswith("--command=")][0]
    assert '"jax[tpu]"' in remote and "pip install -q -e ~/fred_jax" in remote
    assert data[4] == "scp" and "/data/fred" in data and "--worker=all" in data


def test_tpu_run_starts_main_on_all_workers():
    (cmd,) = dry_run("tpu_run.sh", "fred", "z", "configs/cifar10_dm.py", "gs://b/run 1",
                     "--config.num_devices=32", DETACH="1")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "fred"]
    assert "--worker=all" in cmd
    remote = shlex.split([a for a in cmd if a.startswith("--command=")][0][len("--command="):])
    assert remote[:3] == ["cd", "~/fred_jax", "&&"]
    i = remote.index("-m")
    assert "FRED_DISTRIBUTED=1" in remote[:i] and remote[i + 1] == "fred_jax.main"
    assert remote[i + 2:i + 5] == ["--config=configs/cifar10_dm.py", "--workdir=gs://b/run 1",
                                   "--config.num_devices=32"]
    assert "nohup" in remote and remote[-1] == "&"


def test_gpu_and_slurm():
    (cmd,) = dry_run("gpu_single_host.sh", "configs/c.py", "/w", "4", "--config.seed=1")
    assert cmd[:2] == ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3"]
    assert cmd[-5:] == ["-m", "fred_jax.main", "--config=configs/c.py", "--workdir=/w",
                        "--config.seed=1"]
    (cmd,) = dry_run("slurm_multinode.sbatch", "configs/c.py", "/shared/w")
    assert cmd[0] == "srun" and cmd[-3:] == ["fred_jax.main", "--config=configs/c.py",
                                             "--workdir=/shared/w"]
    (cmd,) = dry_run("tpu_delete.sh", "fred", "z")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "fred"]


@pytest.mark.parametrize("script", ["tpu_create.sh", "tpu_run.sh", "gpu_single_host.sh"])
def test_missing_arguments_print_usage(script):
    proc = subprocess.run(["bash", str(LAUNCH / script), "--dry-run"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "usage:" in proc.stderr
