#!/usr/bin/env bash
# Installs keras-timbre with its test extras, then runs the suite on the three
# Keras backends: everything on tensorflow, tests marked `backend` on jax and torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[jax,torch,test]"
export TF_CPP_MIN_LOG_LEVEL=2
status=0
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider --timeout=900 tests || status=1
for backend in jax torch; do
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider --timeout=900 -m backend tests || status=1
done
exit $status
