"""Pruning scores against direct computations; score files; 1 vs 8 devices."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pruning import score_io, scores
from core.data import ArrayDataset
from core.models import create_model
from core.sampler import IndexSampler


def _mlp_numpy(params, x):
  h = x.reshape(len(x), -1)
  h = np.maximum(h @ np.asarray(params["Dense_0"]["kernel"]) + np.asarray(params["Dense_0"]["bias"]), 0)
  return h @ np.asarray(params["Dense_1"]["kernel"]) + np.asarray(params["Dense_1"]["bias"])


def test_el2n_matches_numpy_on_tiny_model(toy_splits, toy_train_config):
  from core import train
  data = toy_splits()
  cfg = ml_collections.ConfigDict(dict(train=toy_train_config(), seed=5,
                                       el2n=dict(epoch=0, num_runs=2)))
  res = scores.compute_scores("el2n", data, cfg)
  want = []
  for r in range(2):
    model = create_model(cfg.train.model, num_classes=3)
    st = train.create_train_state(cfg.train, model, (6,), 5 + 1000 * (r + 1))
    logits = _mlp_numpy(st.params, data.train.x.astype(np.float64))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(p)), data.train.y] = 1
    want.append(np.sqrt(((p - onehot) ** 2).sum(1)))
  np.testing.assert_allclose(res.per_run, np.stack(want), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(res.scores, np.mean(want, 0), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(res.ids, data.train.ids)
  assert res.meta["method"] == "el2n" and res.meta["num_runs"] == 2 and res.meta["epoch"] == 0
  assert res.meta["fingerprint"] == data.train.fingerprint()


def test_el2n_after_training_epochs_changes_and_is_cached(tmp_path, toy_splits, toy_train_config):
  data = toy_splits()
  cfg = dict(train=toy_train_config(), el2n=dict(epoch=2, num_runs=1))
  res = scores.compute_scores("el2n", data, cfg, cache_dir=str(tmp_path))
  files = os.listdir(tmp_path)
  assert len(files) == 1 and files[0].startswith("el2n-")
  init = scores.compute_scores("el2n", data, dict(cfg, el2n=dict(epoch=0, num_runs=1)))
  assert res.scores.mean() < init.scores.mean()  # training reduced the error
  again = scores.compute_scores("el2n", data, cfg, cache_dir=str(tmp_path))  # from file
  np.testing.assert_array_equal(again.scores, res.scores)
  assert again.meta["epoch"] == 2
  # Another dataset with the same ids: the fingerprint check refuses the file.
  other = toy_splits(seed=1)
  path = os.path.join(tmp_path, files[0])
  with pytest.raises(score_io.ScoreFileError, match="fingerprint"):
    score_io.load(path, other.train)
  with pytest.raises(score_io.ScoreFileError, match="ids do not match"):
    score_io.load(path, data.train.subset(data.train.ids[:10]))


def test_el2n_epoch_beyond_training_raises(toy_splits, toy_train_config):
  data = toy_splits()
  with pytest.raises(ValueError, match="never reached"):
    scores.compute_scores("el2n", data, dict(train=toy_train_config(),
                                             el2n=dict(epoch=9, num_runs=1)))


@pytest.mark.parametrize("model_cfg,shape", [
    (dict(name="mlp", hidden=(8,)), (6,)),
    (dict(name="cnn1d", channels=4, kernels=(3, 3), stride=2), (12, 1)),
])
def test_grand_chunked_pmapped_equals_loop_and_device_count(n_devices, model_cfg, shape):
  assert n_devices == 8
  rng = np.random.default_rng(0)
  n = 37  # not a multiple of chunk * devices: exercises padding
  ds = ArrayDataset(rng.normal(size=(n,) + shape).astype(np.float32),
                    rng.integers(0, 3, n).astype(np.int32), np.arange(n, dtype=np.int64) * 3, 3)
  model = create_model(model_cfg, num_classes=3)
  variables = model.init(jax.random.PRNGKey(1), jnp.zeros((1,) + shape))
  ref = scores.grand_loop(model, variables, ds)
  got8 = scores.grand_scores(model, variables, ds, chunk_size=2)
  got1 = scores.grand_scores(model, variables, ds, chunk_size=5, num_devices=1)
  np.testing.assert_allclose(got8, ref, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got1, got8, rtol=1e-5, atol=1e-7)
  assert (ref > 0).all()


@pytest.mark.parametrize("method", ["grand", "el2n"])
def test_trained_scores_1_vs_8_devices(method, toy_splits, toy_train_config):
  data = toy_splits()
  out = {}
  for nd in (1, 8):
    cfg = {"train": toy_train_config(num_devices=nd),
           method: dict(epoch=1, num_runs=2, chunk_size=4)}
    out[nd] = scores.compute_scores(method, data, cfg)
  assert out[1].per_run.shape == (2, 60)
  # Same seeds, same data order; the training itself is data-parallel over 8
  # devices (pmean of gradients), so only float reassociation differs.
  np.testing.assert_allclose(out[8].scores, out[1].scores, rtol=2e-3, atol=1e-5)


def test_forgetting_counts_hand_made():
  hist = np.array([
      # ex0: learned, never forgotten; ex1: forgotten twice; ex2: never learned;
      # ex3: learned late; ex4: forgotten once at the end.
      [1, 1, 0, 0, 1],
      [1, 0, 0, 0, 1],
      [1, 1, 0, 1, 1],
      [1, 0, 0, 1, 0],
  ], dtype=bool)
  np.testing.assert_array_equal(scores.forgetting_counts(hist), [0, 2, 4, 0, 1])
  with pytest.raises(ValueError):
    scores.forgetting_counts(np.zeros(5))


def test_forgetting_tracker_counts_presentations():
  hist = np.array([[1, 1, 0, 0, 1], [1, 0, 0, 0, 1], [1, 1, 0, 1, 1], [1, 0, 0, 1, 0]], bool)
  t = scores.ForgettingTracker(5)
  for row in hist:  # every example presented once per record: same as the per-epoch counts
    perm = np.array([3, 0, 4, 1, 2])
    t.update(perm, row[perm])
  np.testing.assert_array_equal(t.counts(), scores.forgetting_counts(hist))
  # partial batches, and an example repeated within one batch (batch larger than the set)
  t = scores.ForgettingTracker(3)
  t.update([0, 1], [True, True])
  t.update([0, 0, 2], [False, True, False])   # ex0: correct -> incorrect -> correct
  t.update([1, 0], [False, False])            # ex1 and ex0 forgotten
  np.testing.assert_array_equal(t.counts(), [2, 1, 4])  # ex2 never correct: most presentations (ex0's 4)
  with pytest.raises(ValueError, match="one correctness flag"):
    t.update([0, 1], [True])


@pytest.mark.parametrize("record", ["minibatch", "epoch"])
def test_forgetting_from_training_history(record, toy_splits, toy_train_config):
  data = toy_splits()
  res = scores.compute_scores("forgetting", data, dict(train=toy_train_config(num_epochs=4),
                                                       forgetting=dict(record=record)))
  if record == "minibatch":  # 4 steps of 16 per epoch: 4 wrapped-round examples are seen twice
    sampler = IndexSampler(data.train.ids, 16, seed=1000)  # run 0's trainer seed
    seen = np.bincount(np.concatenate([sampler.positions(s) for s in range(16)]), minlength=60)
    assert seen.min() == 4 and res.meta["max_records"] == seen.max() > 4
  else:
    assert res.meta["max_records"] == 4
  top = res.meta["max_records"]
  assert res.scores.min() >= 0 and res.scores.max() <= top
  assert np.all((res.scores <= top // 2) | (res.scores == top))  # at most half the records, or never learned
  with pytest.raises(ValueError, match="forgetting.record"):
    scores.compute_scores("forgetting", data, dict(train=toy_train_config(),
                                                   forgetting=dict(record="step")))


def test_prototype_ranks_far_points_hardest():
  rng = np.random.default_rng(0)
  centers = np.array([[0, 0], [10, 0], [0, 10]], float)
  labels = np.repeat(np.arange(3), 50)
  emb = centers[labels] + rng.normal(scale=0.3, size=(150, 2))
  far = [7, 60, 130]
  emb[far] += np.array([[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]])
  for centroids in ("kmeans", "kmeans_per_class", "class_mean"):
    s = scores.prototype_scores(emb, labels, k=3 if centroids == "kmeans" else 1,
                                centroids=centroids, normalize=False)
    assert set(np.argsort(-s)[:3]) == set(far), centroids
  with pytest.raises(ValueError, match="labels"):
    scores.prototype_scores(emb, None, centroids="class_mean")


def test_prototype_pca_and_random_features_end_to_end(toy_splits, toy_train_config):
  data = toy_splits()
  pca = scores.compute_scores("prototype", data, dict(prototype=dict(embedding="pca", dim=4, k=3)))
  assert pca.scores.shape == (60,) and np.isfinite(pca.scores).all()
  assert pca.meta["uses_labels"] is False
  rf = scores.compute_scores("prototype", data, dict(
      train=toy_train_config(),
      prototype=dict(embedding="random_features", k=3, centroids="class_mean")))
  assert rf.meta["uses_labels"] is True and np.isfinite(rf.scores).all()


def test_prototype_on_supervised_embedding_end_to_end(toy_splits, toy_train_config):
  """embedding='supervised': penultimate features after the last full epoch of training on
  the labels (not label-free); the embedding differs from the random-feature one."""
  data = toy_splits()
  sup = scores.compute_scores("prototype", data, dict(
      train=toy_train_config(), prototype=dict(embedding="supervised", k=3)))
  rf = scores.compute_scores("prototype", data, dict(
      train=toy_train_config(), prototype=dict(embedding="random_features", k=3)))
  assert sup.meta["uses_labels"] is True and sup.meta["embedding"] == "supervised"
  assert np.isfinite(sup.scores).all() and not np.allclose(sup.scores, rf.scores)


def test_random_and_input_norm(tmp_path, toy_splits):
  data = toy_splits()
  r1 = scores.compute_scores("random", data, dict(seed=3))
  r2 = scores.compute_scores("random", data, dict(seed=3))
  np.testing.assert_array_equal(r1.scores, r2.scores)
  assert not np.array_equal(r1.scores, scores.compute_scores("random", data, dict(seed=4)).scores)
  n = scores.compute_scores("input_norm", data, None)
  np.testing.assert_allclose(n.scores, np.linalg.norm(data.train.x, axis=1), rtol=1e-6)
  assert scores.rank_correlation(n.scores, n.scores) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="unknown score method"):
    scores.compute_scores("margn", data, None)  # 'margin' is a method (pruning.uncertainty)


def test_score_file_roundtrip_no_pickle(tmp_path, toy_splits):
  data = toy_splits()
  res = score_io.ScoreResult(data.train.ids, np.arange(60.0), dict(
      method="x", fingerprint=data.train.fingerprint(), dataset="toy"), np.ones((2, 60)))
  path = score_io.save(str(tmp_path / "s.npz"), res)
  with np.load(path, allow_pickle=False) as f:
    meta = json.loads(str(f["meta_json"]))
  assert meta["method"] == "x"
  # Loading reorders to the dataset's row order: a file saved in another order (reversed,
  # with a per-run array) comes back aligned with data.train.ids.
  rev = score_io.ScoreResult(data.train.ids[::-1].copy(), np.arange(60.0)[::-1].copy(),
                             res.meta, np.stack([np.arange(60.0), -np.arange(60.0)])[:, ::-1])
  rpath = score_io.save(str(tmp_path / "rev.npz"), rev)
  back = score_io.load(rpath, data.train)
  np.testing.assert_array_equal(back.ids, data.train.ids)
  np.testing.assert_array_equal(back.scores, np.arange(60.0))
  np.testing.assert_array_equal(back.per_run[1], -np.arange(60.0))
  np.testing.assert_array_equal(rev.aligned_to(data.train.ids), np.arange(60.0))
  with pytest.raises(score_io.ScoreFileError, match="method"):
    score_io.load(path, data.train, expect={"method": "el2n"})
  with pytest.raises(score_io.ScoreFileError, match="no score file"):
    score_io.load(str(tmp_path / "missing.npz"))
  assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
