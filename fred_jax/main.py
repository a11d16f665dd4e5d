"""Distil a dataset: ``python -m fred_jax.main --config configs/quickstart.py --workdir runs/x``.

Validates the configuration (before loading anything), distils, evaluates, checkpoints and
exports into ``--workdir``; rerunning the same command resumes from the last checkpoint.
Override any field on the command line, e.g. ``--config.num_iterations=100``.

Devices: ``--config.num_devices`` (default 0: all devices of all hosts). Multi-host: start the
same command on every host (``launch/``); ``jax.distributed`` is initialised first when the
process is one of several (:func:`fred_jax.sharding.maybe_initialize_distributed`), and only
process 0 logs at INFO, prints and writes outputs; the workdir must be shared.

Errors (bad config, data, workdir, divergence, unwritable folders, a failed final evaluation)
end with one line ``error: ...`` saying what and what to do, exit status 1 (``--verbose``: the
traceback). SIGTERM/SIGINT save a checkpoint and exit with status 128 + the signal number.
A workdir in use by another run is refused at once (:mod:`fred_jax.workdir_lock`).
A workdir holding a run with other settings is refused (fields named); ``--allow_changes``
continues it with new values, e.g. ``--allow_changes=num_iterations`` to distil longer.

``config.baselines = "pixel"`` then distils the pixel baseline at the same budget (same
iterations and evaluation) in ``<workdir>/baselines/parameterization=pixel`` and prints both
accuracies (the quickstart does).
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from fred_jax import configuration, platform, sharding, sweep, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "configuration file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "output and checkpoint directory")
_ALLOW = flags.DEFINE_list("allow_changes", [], "config fields that may differ from the run "
                           "stored in --workdir, e.g. num_iterations to continue it longer")
_VERBOSE = flags.DEFINE_boolean("verbose", False, "show the traceback of an error")


def main(argv: list[str]) -> None:
    sharding.maybe_initialize_distributed()  # before anything touches a device
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("config", "workdir"):
        if flags.FLAGS[name].value is None:
            raise app.UsageError(f"--{name} is required")
    config = _CONFIG.value
    if not sharding.is_main_process():
        logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)

    def distil() -> list[dict]:
        configuration.validate(config)
        variants = sweep.baseline_variants(config)
        sweep.check(config, variants)  # the baselines' settings too, before any compute
        platform.enable_compilation_cache(config.compilation_cache)
        results = train.run(config, _WORKDIR.value, allow_changes=_ALLOW.value)
        baselines = sweep.run(config, os.path.join(_WORKDIR.value, "baselines"), variants)
        return [results] + [r for _, r in baselines]

    runs = configuration.run_command(distil, _VERBOSE.value)
    if not sharding.is_main_process():
        return
    for results in runs:
        for name, r in results["accuracy"].items():
            print(f"{results['parameterization']:>5s} {name}: test accuracy {r['mean']:.2f} +- "
                  f"{r['std']:.2f} % over {len(r['accs'])} seeds "
                  f"({results['instances_per_class']} instance"
                  f"{'s' if results['instances_per_class'] != 1 else ''}/class, "
                  f"{results['budget_parameters']} stored floats)")
    print(f"outputs in {_WORKDIR.value}")


if __name__ == "__main__":
    configuration.run_app(main)
