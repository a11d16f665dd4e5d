#!/usr/bin/env bash
# Creates the reference's own virtual environment (CPU torch) used by the parity harness:
# .venv-ref/ in the project root. The official code also imports torchvision, kornia and
# matplotlib at import time; the harness gives it import-only stand-ins (stubs/), because the
# functions it calls do not use them.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv-ref
.venv-ref/bin/pip install -q 'torch==2.13.0' numpy scipy tqdm h5py
.venv-ref/bin/python -c "import torch; print('reference env: torch', torch.__version__)"
