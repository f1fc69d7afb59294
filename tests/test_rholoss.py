"""RHO-LOSS: selectors, label noise, IL storage, trainer selection path."""
import numpy as np
import pytest

from pruning import rholoss
from pruning.data import DataError


def test_select_top_by_reducible_loss_hand_made():
  ids = np.array([10, 3, 7, 42, 5, 8])
  train_loss = np.array([2.0, 0.5, 3.0, 1.0, 2.5, 2.0])
  il_loss = np.array([0.1, 0.4, 2.9, 0.2, 0.5, 0.1])
  # reducible:       1.9  0.1  0.1  0.8  2.0  1.9   -> 5, then tie (8, 10) by id, then 42
  out = rholoss.select("rholoss", ids, train_loss, 4, il_loss)
  np.testing.assert_array_equal(out, [5, 8, 10, 42])
  # the same candidates in another order give the same selection
  perm = np.array([3, 5, 0, 2, 4, 1])
  np.testing.assert_array_equal(
      rholoss.select("rholoss", ids[perm], train_loss[perm], 4, il_loss[perm]), out)
  np.testing.assert_array_equal(rholoss.select("loss", ids, train_loss, 2, il_loss), [7, 5])
  np.testing.assert_array_equal(rholoss.select("il", ids, train_loss, 2, il_loss), [8, 10])
  np.testing.assert_array_equal(rholoss.select("uniform", ids, train_loss, 3), [10, 3, 7])
  # brute force: the selected set is exactly the top-n_b set of reducible losses
  rng = np.random.default_rng(0)
  for _ in range(20):
    n = rng.integers(5, 40)
    cand = rng.choice(1000, size=n, replace=False)
    tl, il = rng.random(n), rng.random(n)
    k = int(rng.integers(1, n + 1))
    got = rholoss.select("rholoss", cand, tl, k, il)
    assert len(got) == k == len(set(got.tolist()))
    thresh = np.sort(tl - il)[::-1][k - 1]
    assert set(got.tolist()) == set(cand[(tl - il) >= thresh].tolist())


def test_select_errors():
  with pytest.raises(ValueError, match="NaN"):
    rholoss.select("loss", np.arange(3), np.array([1.0, np.nan, 2.0]), 2)
  with pytest.raises(ValueError, match="n_b"):
    rholoss.select("loss", np.arange(3), np.ones(3), 4)
  with pytest.raises(ValueError, match="unknown"):
    rholoss.select("foo", np.arange(3), np.ones(3), 1)
  with pytest.raises(ValueError, match="IL"):
    rholoss.BatchSelector("rholoss")


def test_flip_labels_and_holdout():
  y = np.arange(200) % 10
  ids = np.arange(200) + 1000
  y2, noisy = rholoss.flip_labels(y, ids, 0.25, 10, seed=3)
  assert len(noisy) == 50
  changed = ids[y2 != y]
  np.testing.assert_array_equal(changed, noisy)  # every flip goes to a different class
  y3, noisy3 = rholoss.flip_labels(y, ids, 0.25, 10, seed=3)
  np.testing.assert_array_equal(y2, y3)
  pool, hold = rholoss.split_holdout(ids, 0.2, seed=1)
  assert len(hold) == 40 and len(pool) == 160
  assert not set(pool.tolist()) & set(hold.tolist())
  with pytest.raises(DataError):
    rholoss.flip_labels(y, ids, 1.5, 10, seed=0)


def test_il_losses_roundtrip_and_selector_counts(tmp_path):
  il = rholoss.ILLosses(np.array([5, 1, 9]), np.array([0.5, 0.1, 0.9]), {"model": "mlp"})
  path = str(tmp_path / "il.npz")
  il.save(path)
  il2 = rholoss.ILLosses.load(path)
  np.testing.assert_allclose(il2.lookup(np.array([9, 5])), [0.9, 0.5])
  assert il2.metadata["model"] == "mlp"
  with pytest.raises(DataError):
    il2.lookup(np.array([2]))
  sel = rholoss.BatchSelector("rholoss", il2, noisy_ids=[9])
  out = sel(0, np.array([1, 5, 9]), np.array([1.0, 1.0, 1.0]), 2)
  np.testing.assert_array_equal(out, [1, 5])
  st = sel.stats()
  assert st["noisy_selected"] == 0 and st["noisy_candidates"] == 1
