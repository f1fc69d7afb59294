"""Test-wide settings: 8 fake CPU devices for JAX, no GPUs for TensorFlow.

Both must be set before jax / tensorflow are imported anywhere, which is why they
live at the top of conftest.py (pytest imports it before any test module).
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ["XLA_FLAGS"] = (
    os.environ["XLA_FLAGS"]
    if "xla_force_host_platform_device_count" in os.environ["XLA_FLAGS"]
    else os.environ["XLA_FLAGS"] + " --xla_force_host_platform_device_count=8"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # hide GPUs from TensorFlow (and JAX)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
# Every worker a test launches inherits this: one killed for hanging (test_multihost.wait sends
# SIGABRT) prints the Python stack of each of its threads.
os.environ.setdefault("PYTHONFAULTHANDLER", "1")
# The XLA:CPU AVX-512 float64 conv crash (jaxlib >= 0.8): cap the ISA before any JAX computation,
# whatever order the test modules are collected in (a no-op on JAX 0.5.3; docs/current_jax.md).
import distill.nt_compat  # noqa: E402,F401

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def n_devices():
    import jax

    return jax.local_device_count()


def make_toy_splits(n=60, n_test=20, d=6, classes=3, seed=0):
    """Gaussian blobs: `classes` centres in R^d (scale 2), unit noise; train ids 100.., test ids 0..

    Returns DatasetSplits(train (n, d), test (n_test, d), classes, "toy"), float32 x, int32 y.
    """
    import numpy as np

    from core.data import ArrayDataset, DatasetSplits

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 2
    y = rng.integers(0, classes, n + n_test).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n + n_test, d))).astype(np.float32)
    tr = ArrayDataset(x[:n], y[:n], np.arange(100, 100 + n, dtype=np.int64), classes, "toy/train")
    te = ArrayDataset(x[n:], y[n:], np.arange(n_test, dtype=np.int64), classes, "toy/test")
    return DatasetSplits(tr, te, classes, "toy")


def make_toy_train_config(**overrides):
    """A trainer config for the toy splits: MLP (8 hidden), batch 16, 3 epochs, adam 1e-2, one
    device, quiet, no checkpoints; `overrides` update it (e.g. num_devices=8)."""
    from core.config import base_config

    c = base_config()
    c.model = dict(name="mlp", hidden=(8,))
    c.batch_size = 16
    c.num_epochs = 3
    c.optimizer.update(name="adam", lr=1e-2)
    c.checkpoint = False
    c.progress_bar = False
    c.log_every_steps = 1000
    c.num_devices = 1
    c.update(overrides)
    return c


@pytest.fixture
def toy_splits():
    """`make_toy_splits`, the toy data of the score and selector tests."""
    return make_toy_splits


@pytest.fixture
def toy_train_config():
    """`make_toy_train_config`, the tiny trainer of the score and selector tests."""
    return make_toy_train_config
