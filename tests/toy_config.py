"""The 4-iteration toy run of ``test_faults`` (no evaluation), as a config file for
``tests/toy_main.py``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_train import small_config  # noqa: E402


def get_config():
    return small_config(num_iterations=4, **{"eval.num_eval": 0})
