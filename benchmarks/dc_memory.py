"""Memory of one DC iteration program: XLA's buffer sizes of the jitted ``fred_jax.train`` step.

    python benchmarks/dc_memory.py                      # ipc 1 k=64, ipc 2 k=32, ipc 10 k=160
    python benchmarks/dc_memory.py --settings 2,32 --run 1 --label "after"

Per setting (ipc, k) of ``configs/cifar10_dc_ipc2.py`` (method DC, ConvNetD3, 256 real images
per class, the reference loop schedule of that ipc), on 300 random real images per class: the
compiled step's temp, argument and output bytes (``Compiled.memory_analysis()``; temp is the
one preallocated block that holds every intermediate buffer, XLA's heap simulation of the
whole iteration), the compile seconds, and with ``--run N`` the wall and process CPU seconds of
N iterations and the process's peak RSS. What fills the temp block is in the
``*buffer-assignment.txt`` files that ``XLA_FLAGS=--xla_dump_to=DIR`` writes. ``--label`` names
the code measured (another tree can be measured with ``PYTHONPATH``). Recorded by
``benchmarks/harness.py`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from fred_jax import configuration, objectives, train
from step_time import cifar_like

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(os.path.dirname(HERE), "configs", "cifar10_dc_ipc2.py")


def measure(ipc: int, k: int, runs: int) -> dict:
    """Buffer sizes (MiB) of the DC step at (ipc, k), and the timing of ``runs`` iterations."""
    config = configuration.from_file(CONFIG)
    config.ipc, config.k = ipc, k
    dataset = cifar_like()
    configuration.validate(config, dataset=dataset)
    setup = train.create(config, dataset)
    with harness.Stopwatch() as compiling:
        compiled = setup.step_fn.lower(setup.state).compile()
    mem = compiled.memory_analysis()
    row = {"ipc": ipc, "k": k, "instances_per_class": int(setup.problem.instances_per_class),
           "conv_impl": objectives.conv_impl(config), "compile_s": round(compiling.wall, 1),
           "temp_mib": round(mem.temp_size_in_bytes / 2**20, 1),
           "argument_mib": round(mem.argument_size_in_bytes / 2**20, 2),
           "output_mib": round(mem.output_size_in_bytes / 2**20, 2)}
    if runs:
        state = setup.state
        with harness.Stopwatch() as sw:
            for _ in range(runs):
                state, metrics = compiled(state)
            jax.block_until_ready(metrics)
        row.update(iteration_s=round(sw.wall / runs, 2), iteration_cpu_s=round(sw.cpu / runs, 2),
                   peak_rss_mib_so_far=round(harness.peak_rss_mib(), 1))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", default="1,64;2,32;10,160", help="ipc,k pairs, ';'-separated")
    p.add_argument("--run", type=int, default=0, help="iterations to time after compiling")
    p.add_argument("--label", default="", help="what code is measured (e.g. a commit)")
    a = p.parse_args()
    pairs = [tuple(int(v) for v in s.split(",")) for s in a.settings.split(";") if s]
    with harness.Record("dc_memory", settings={"run": a.run, "label": a.label}) as record:
        for ipc, k in pairs:
            row = record.add(measure(ipc, k, a.run), load_1min=harness.load_average())
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
