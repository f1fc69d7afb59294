"""Shapes, embeddings and the model registry of core.models."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from core.models import create_model

CASES = [
    ("mlp", dict(hidden=(32, 16)), (8, 8, 1), 16),
    ("cnn", dict(channels=(8, 16), dense=32), (8, 8, 1), 32),
    ("cnn1d", {}, (40, 1), 125),  # 40 -> 19 -> 10 -> 5 positions x 25 channels
    ("convnet", dict(width=16, depth=3), (8, 8, 1), 16),  # 8 -> 4 -> 2 -> 1
    ("convnet", dict(width=16, depth=3, norm="instance"), (32, 32, 3), 16 * 4 * 4),
    ("convnet1d", dict(width=16, depth=3, norm="layer"), (40, 1), 16 * 5),
    ("resnet", dict(width=4, stage_sizes=(1, 1)), (8, 8, 3), 8),
]


@pytest.mark.parametrize("name,kwargs,shape,emb_dim", CASES)
def test_forward_and_embedding(name, kwargs, shape, emb_dim):
  model = create_model(ml_collections.ConfigDict(dict(name=name, num_classes=7, **kwargs)))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3,) + shape), jnp.float32)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x[:1])
  apply = jax.jit(model.apply, static_argnames=("train", "return_embedding", "mutable"))
  logits = apply(variables, x)
  assert logits.shape == (3, 7)
  logits2, emb = apply(variables, x, train=False, return_embedding=True)
  np.testing.assert_allclose(logits, logits2, rtol=1e-5, atol=1e-5)
  assert emb.shape == (3, emb_dim)
  assert np.isfinite(np.asarray(emb)).all()
  if "batch_stats" in variables:  # train mode updates the running statistics
    out, upd = apply(variables, x, train=True, mutable=("batch_stats",))
    assert out.shape == (3, 7)
    assert not np.allclose(jax.tree.leaves(upd["batch_stats"])[0],
                           jax.tree.leaves(variables["batch_stats"])[0])


def test_resnet18_shapes():
  """Full ResNet-18 via eval_shape (no compilation: keeps the test fast on CPU)."""
  model = create_model(dict(name="resnet18", num_classes=10))
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  n = sum(np.prod(v.shape) for v in jax.tree.leaves(variables["params"]))
  assert 11.1e6 < n < 11.2e6  # CIFAR ResNet-18: 11.17M parameters
  logits, emb = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, return_embedding=True), variables, x)
  assert logits.shape == (2, 10) and emb.shape == (2, 512)


def test_cnn1d_matches_authors_parameter_count():
  model = create_model(dict(name="cnn1d", num_classes=10))
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 40, 1)))
  n = sum(x.size for x in jax.tree.leaves(variables))
  # conv 1*25*5+25, 2 x (25*25*3+25), linear 125*10+10
  assert n == (125 + 25) + 2 * (1875 + 25) + 1260


def test_unknown_model_and_bad_kwargs():
  with pytest.raises(ValueError, match="'nope'"):
    create_model(dict(name="nope"))
  with pytest.raises(ValueError, match="mlp"):
    create_model(dict(name="mlp", depthh=3))
