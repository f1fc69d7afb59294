#!/usr/bin/env bash
# Runs the tests of theory/ and pruning/ (no neural-tangents, no TensorFlow) on
# whatever JAX the current python has - e.g. a newer JAX than the pinned 0.5.3 -
# then trains two configs on the default backend (a GPU if there is one).
# Usage: PYTHON=python3 bash scripts/newer_jax_check.sh [OUT_DIR]
# (that python needs this repo installed, e.g. pip install --no-deps -e ., for the
# multi-process test, whose workers import the packages)
set -uo pipefail
PY=${PYTHON:-python3}
OUT=${1:-/tmp/newer_jax_check}
mkdir -p "$OUT"
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
# 1) The JAX-only tests on CPU with 8 fake devices (tests/conftest.py).
$PY -m pytest -q -p no:cacheprovider tests/test_theory_*.py tests/test_models.py \
  tests/test_train.py tests/test_multihost.py tests/test_scores.py tests/test_select.py \
  tests/test_rholoss.py -k "not comparison" 2>&1 | tail -25  # the comparison test needs neural-tangents
status=${PIPESTATUS[0]}
# 2) Training on the default backend (GPU when present).
for cfg in digits_cnn mnist1d_cnn; do
  $PY scripts/train.py --config=pruning/configs/$cfg.py --workdir="$OUT/$cfg" \
    --config.progress_bar=False 2>&1 | grep -iE "test_accuracy|wall_time|error" | tail -3
done
exit $status
