"""GraNd from activations and output gradients (pruning.grand_fast) == per-example gradients.

Against the per-example loop (`scores.grand_loop`, jax.grad per example) for Dense and 1-D /
2-D Conv models with padding and strides, on 8 and 1 devices with sizes that need padding,
on streamed record data, a centred model, and the vmap fallback for a model with LayerNorm.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from core.config import base_config
from core.data import ArrayDataset, load_dataset
from core.data import records
from core.models import create_model
from core.state import create_train_state
from pruning import grand_fast, scores


def _ds(n, shape, c=3, seed=0):
  rng = np.random.default_rng(seed)
  return ArrayDataset(rng.normal(size=(n,) + shape).astype(np.float32),
                      rng.integers(0, c, n).astype(np.int32), np.arange(n, dtype=np.int64) * 3, c)


@pytest.mark.parametrize("model_cfg,shape", [
    (dict(name="mlp", hidden=(8, 5)), (6,)),
    (dict(name="cnn1d", channels=4, kernels=(5, 3), stride=2), (13, 1)),
    (dict(name="cnn", channels=(3, 4), dense=6), (8, 8, 1)),
])
def test_fast_grand_equals_per_example_gradients(model_cfg, shape):
  ds = _ds(37, shape)  # 37: not a multiple of the batch or the 8 devices
  model = create_model(model_cfg, num_classes=3)
  variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1,) + shape))
  ref = scores.grand_loop(model, variables, ds)
  got8 = grand_fast.grand_scores_fast(model, variables, ds, batch_size=16)
  assert grand_fast.last_path() == "activations"
  np.testing.assert_allclose(got8, ref, rtol=1e-5, atol=1e-7)
  if model_cfg["name"] == "cnn1d":  # one device (a compile per model: keep it to one)
    got1 = grand_fast.grand_scores_fast(model, variables, ds, batch_size=10, num_devices=1)
    np.testing.assert_allclose(got1, ref, rtol=1e-5, atol=1e-7)
  assert (ref > 0).all()


def test_fast_grand_centred_trained_state_on_streamed_data(tmp_path):
  records.prepare_bundled("digits", str(tmp_path / "d"))
  mem = load_dataset("digits")
  rec = load_dataset("digits", source="records", data_dir=str(tmp_path / "d"))
  c = base_config()
  c.model = ml_collections.ConfigDict(dict(name="cnn", channels=(4,), dense=8))
  c.center_at_init = True
  model = create_model(c.model, num_classes=10)
  st = create_train_state(c, model, (8, 8, 1), 0)
  # Move the parameters off init so that centring matters (f - f_init != 0).
  st = st.replace(params=jax.tree.map(lambda p: p * 1.3 + 0.01, st.params))
  ids = mem.train.ids[:21]
  ref = scores.grand_scores(model, st, mem.train.subset(ids), chunk_size=4)
  got = grand_fast.grand_scores_fast(model, st, rec.train.subset(ids), batch_size=24)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_unsupported_layers_fall_back_to_vmap():
  ds = _ds(11, (6, 6, 1))
  model = create_model(dict(name="convnet", width=4, depth=1, norm="layer"), num_classes=3)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 1)))
  got = grand_fast.grand_scores_fast(model, variables, ds, batch_size=8)
  assert grand_fast.last_path().startswith("vmap_fallback: parameter")
  np.testing.assert_allclose(got, scores.grand_loop(model, variables, ds), rtol=1e-4, atol=1e-6)


def test_compute_scores_grand_activations_path_equals_vmap_on_streamed_data(tmp_path):
  records.prepare_bundled("digits", str(tmp_path / "d"))
  rec = load_dataset("digits", source="records", data_dir=str(tmp_path / "d"))
  c = base_config()
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(16,)))
  c.batch_size = 64
  c.num_epochs = 1
  c.progress_bar = False
  c.checkpoint = False
  out = {p: scores.compute_scores("grand", rec, dict(train=c, predict_batch_size=256,
                                                     grand=dict(epoch=0, num_runs=1, path=p)))
         for p in ("vmap", "activations")}
  np.testing.assert_array_equal(out["vmap"].ids, rec.train.ids)
  np.testing.assert_allclose(out["activations"].scores, out["vmap"].scores, rtol=1e-5)
  with pytest.raises(ValueError, match="grand.path"):
    scores.compute_scores("grand", rec, dict(train=c, grand=dict(epoch=0, num_runs=1,
                                                                 path="fast")))
