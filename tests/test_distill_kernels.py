"""NT kernels vs our closed-form arc-cosine recursion; batching; conv kernels."""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from distill import kernels


def _x(n, shape, seed):
  return np.random.default_rng(seed).normal(size=(n,) + shape)


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("kernel_type", ["ntk", "nngp"])
def test_nt_fc_kernel_equals_closed_form(depth, kernel_type):
  x1, x2 = _x(9, (8, 8, 1), 0), _x(6, (8, 8, 1), 1)
  with kernels.x64():
    spec = kernels.KernelSpec(architecture="fc", depth=depth, kernel_type=kernel_type)
    kf = kernels.make_kernel_fn(spec, (8, 8, 1))
    nt_cross = np.asarray(kf(jnp.asarray(x1), jnp.asarray(x2)))
    nt_self = np.asarray(kf(jnp.asarray(x1), jnp.asarray(x1)))
    which = 1 if kernel_type == "ntk" else 0
    ours_cross = np.asarray(kernels.analytic_fc_kernel(jnp.asarray(x1), jnp.asarray(x2), depth)[which])
    ours_self = np.asarray(kernels.analytic_fc_kernel(jnp.asarray(x1), None, depth)[which])
  assert nt_cross.dtype == np.float64 and nt_cross.shape == (9, 6)
  np.testing.assert_allclose(nt_cross, ours_cross, rtol=0, atol=1e-10)
  off = ~np.eye(9, dtype=bool)
  np.testing.assert_allclose(nt_self[off], ours_self[off], rtol=0, atol=1e-10)
  # Diagonal: NT's own rounding (c = 1 - eps -> theta ~ sqrt(eps)) is ~1e-8;
  # ours is exact there (c = 1), so compare the diagonal with a looser bound.
  np.testing.assert_allclose(np.diag(nt_self), np.diag(ours_self), rtol=0, atol=1e-6)
  assert np.allclose(ours_self, ours_self.T, atol=1e-14)


def test_closed_form_diagonal_is_exact_and_gradient_finite():
  x = _x(5, (16,), 2)
  q, s = 2.0, 0.01
  with kernels.x64():
    nngp, ntk = kernels.analytic_fc_kernel(jnp.asarray(x), None, depth=1)
    k0 = q * np.sum(x * x, 1) / 16 + s
    k1 = q * k0 / 2 + s
    np.testing.assert_allclose(np.diag(nngp), k1, rtol=1e-14)
    np.testing.assert_allclose(np.diag(ntk), k1 + q * 0.5 * k0, rtol=1e-14)
    g = jax.grad(lambda z: kernels.analytic_fc_kernel(z, None, depth=3)[1].sum())(jnp.asarray(x))
    assert np.isfinite(np.asarray(g)).all()
    assert float(jax.grad(kernels.safe_arccos)(1.0)) == 0.0
    assert np.isfinite(float(jax.grad(kernels.safe_arccos)(-1.0)))


@pytest.mark.parametrize("arch,shape", [("fc", (8, 8, 1)), ("conv", (8, 8, 1)), ("conv", (40, 1))])
def test_kernel_matrix_batched_equals_direct(arch, shape):
  x1, x2 = _x(11, shape, 3), _x(7, shape, 4)
  spec = kernels.KernelSpec(architecture=arch, depth=2 if arch == "conv" else 3)
  kf = kernels.make_kernel_fn(spec, shape)
  with kernels.x64():
    direct = np.asarray(kf(jnp.asarray(x1), jnp.asarray(x2)))
  batched = kernels.kernel_matrix(kf, x1, x2, batch_size=4)  # ragged: pads and cuts
  assert batched.shape == (11, 7) and batched.dtype == np.float64
  np.testing.assert_allclose(batched, direct, rtol=1e-12, atol=1e-12)
  k_self = kernels.kernel_matrix(kf, x1, x1, batch_size=3)
  np.testing.assert_allclose(k_self, k_self.T, atol=1e-10)
  assert np.linalg.eigvalsh(k_self).min() > -1e-8 * np.trace(k_self)


def test_kernel_spec_and_input_errors():
  with pytest.raises(ValueError, match="architecture"):
    kernels.KernelSpec(architecture="resnet")
  with pytest.raises(ValueError, match="kernel_type"):
    kernels.KernelSpec(kernel_type="rbf")
  with pytest.raises(ValueError, match="depth"):
    kernels.KernelSpec(depth=0)
  with pytest.raises(ValueError, match="pools"):
    kernels.make_kernel_fn(kernels.KernelSpec(architecture="conv", depth=4), (8, 8, 1))
  kf = kernels.make_kernel_fn(kernels.KernelSpec(), (8, 8, 1))
  with pytest.raises(ValueError, match="example shapes"):
    kernels.kernel_matrix(kf, _x(2, (8, 8, 1), 0), _x(2, (4, 4, 1), 0))
