"""Distil a dataset: ``python -m fred_jax.main --config configs/quickstart.py --workdir runs/x``.

Validates the configuration (before loading anything), distils, evaluates, checkpoints and
exports into ``--workdir``; rerunning the same command resumes from the last checkpoint.
Override any field on the command line, e.g. ``--config.num_iterations=100``.

Devices: ``--config.num_devices`` (default 0: all devices of all hosts). Multi-host: start the
same command on every host (``launch/``); ``jax.distributed`` is initialised first when the
process is one of several (:func:`fred_jax.sharding.maybe_initialize_distributed`), and only
process 0 logs at INFO, prints and writes outputs; the workdir must be shared.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from fred_jax import configuration, sharding, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "configuration file (configs/*.py)")
_WORKDIR = flags.DEFINE_string("workdir", None, "output and checkpoint directory")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    sharding.maybe_initialize_distributed()  # before anything touches a device
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not sharding.is_main_process():
        logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)
    try:
        configuration.validate(config)
        results = train.run(config, _WORKDIR.value)
    except (configuration.ConfigError, train.NonFiniteLossError) as e:
        logging.error("%s", e)
        sys.exit(f"error: {e}")
    if not sharding.is_main_process():
        return
    for name, r in results["accuracy"].items():
        print(f"{name}: test accuracy {r['mean']:.2f} +- {r['std']:.2f} % over {len(r['accs'])} "
              f"seeds ({results['instances_per_class']} instances/class, "
              f"{results['budget_parameters']} stored floats)")
    print(f"outputs in {_WORKDIR.value}")


if __name__ == "__main__":
    app.run(main)
