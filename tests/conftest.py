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
# The XLA:CPU AVX-512 float64 conv crash (jaxlib >= 0.8): cap the ISA before any JAX computation,
# whatever order the test modules are collected in (a no-op on JAX 0.5.3; docs/current_jax.md).
import distill.nt_compat  # noqa: E402,F401

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def n_devices():
    import jax

    return jax.local_device_count()
