"""``python -m fred_jax.main`` on the toy dataset of ``test_train`` (3 classes of 8x8 images),
for tests that run the command as a subprocess: ``python tests/toy_main.py --config
tests/toy_config.py --workdir DIR``. ``data.load`` returns the toy set; with
``FRED_TEST_SIGNAL=SIGINT`` (or ``SIGTERM``) the process sends itself that signal while it
loads the data, before the loop starts.
"""

import os
import signal
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]  # this checkout's fred_jax and tests

import test_train  # noqa: E402

from fred_jax import configuration, data, main  # noqa: E402

TOY = test_train.dataset.__wrapped__()


def load(*args, **kwargs):
    name = os.environ.get("FRED_TEST_SIGNAL")
    if name:
        os.kill(os.getpid(), getattr(signal, name))
    return TOY


configuration.DATASETS["toy"] = (TOY.image_shape, TOY.num_classes)
data.load = load
sys.argv = ["fred_jax.main", *sys.argv[1:]]
configuration.run_app(main.main)
