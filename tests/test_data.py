"""Data layer: bundled datasets, the TFDS path on our offline builders, ids, errors."""
import numpy as np
import pytest

from core import data
from core.data import bundled


@pytest.fixture(scope="module")
def digits():
  return data.load_dataset("digits")


@pytest.fixture(scope="module")
def mnist1d_small():
  return data.load_dataset("mnist1d", num_train=600, num_test=200)


def test_digits_shapes_dtypes_classes(digits):
  assert digits.train.x.shape == (1437, 8, 8, 1)
  assert digits.test.x.shape == (bundled.DIGITS_TEST_SIZE, 8, 8, 1)
  assert len(digits.train) + len(digits.test) == 1797
  assert digits.train.x.dtype == np.float32 and digits.train.y.dtype == np.int32
  assert digits.train.ids.dtype == np.int64
  assert digits.num_classes == 10
  assert set(np.unique(digits.train.y)) == set(range(10))
  # Stratified split: every class is 9-11% of each split.
  frac = np.bincount(digits.test.y, minlength=10) / len(digits.test)
  assert np.all((frac > 0.09) & (frac < 0.11)), frac
  np.testing.assert_array_equal(digits.train.ids, np.arange(1437))


def test_standardize_uses_train_statistics(digits):
  assert abs(float(digits.train.x.mean())) < 1e-5
  assert abs(float(digits.train.x.std()) - 1) < 1e-4
  raw = data.load_dataset("digits", normalization="none")
  assert raw.train.x.min() == 0 and raw.train.x.max() == 1
  pc = data.load_dataset("mnist1d", num_train=600, num_test=200, normalization="per_channel")
  np.testing.assert_allclose(pc.train.x.mean(axis=(0, 1)), 0, atol=1e-5)


def test_deterministic(digits, mnist1d_small):
  again = data.load_dataset("digits")
  np.testing.assert_array_equal(again.train.x, digits.train.x)
  m2 = data.load_dataset("mnist1d", num_train=600, num_test=200)
  np.testing.assert_array_equal(m2.train.x, mnist1d_small.train.x)
  np.testing.assert_array_equal(m2.test.y, mnist1d_small.test.y)


def test_mnist1d_shapes_and_default_size(mnist1d_small):
  assert mnist1d_small.train.x.shape == (600, 40, 1)
  assert mnist1d_small.test.x.shape == (200, 40, 1)
  assert mnist1d_small.num_classes == 10
  assert set(np.unique(mnist1d_small.train.y)) == set(range(10))
  other_seed = data.load_dataset("mnist1d", num_train=600, num_test=200, seed=7)
  assert not np.array_equal(other_seed.train.x, mnist1d_small.train.x)


def test_subset_by_ids_and_balanced(digits):
  ids = np.array([5, 3, 100])
  sub = digits.train.subset(ids)
  np.testing.assert_array_equal(sub.ids, ids)
  np.testing.assert_array_equal(sub.x[1], digits.train.x[3])
  bal = data.class_balanced_ids(digits.train, per_class=7, seed=0)
  assert len(bal) == 70 and len(np.unique(bal)) == 70
  np.testing.assert_array_equal(np.bincount(digits.train.subset(bal).y), np.full(10, 7))
  np.testing.assert_array_equal(bal, data.class_balanced_ids(digits.train, 7, seed=0))
  assert not np.array_equal(bal, data.class_balanced_ids(digits.train, 7, seed=1))
  # Subsets of subsets keep the original ids.
  np.testing.assert_array_equal(sub.subset([100]).x[0], digits.train.x[100])


@pytest.mark.parametrize("ids, match", [
    ([1, 2, 2], "duplicated ids \\[2\\]"),
    ([0, 5000], "ids not in dataset .*\\[5000\\]"),
    ([-1], "\\[-1\\]"),
    ([], "empty id list"),
])
def test_bad_ids(digits, ids, match):
  with pytest.raises(data.DataError, match=match):
    digits.train.subset(np.array(ids, dtype=np.int64))


def test_errors_name_the_bad_value(digits):
  with pytest.raises(data.DataError, match="'cifar11'"):
    data.load_dataset("cifar11", source="numpy")
  with pytest.raises(data.DataError, match="'whitening'"):
    data.load_dataset("digits", normalization="whitening")
  with pytest.raises(data.DataError, match="needs data_dir"):
    data.load_dataset("cifar10")
  with pytest.raises(data.DataError, match="class 0, which has only"):
    data.class_balanced_ids(digits.train.subset(np.arange(30)), per_class=100, seed=0)
  x = np.zeros((4, 3), np.float32)
  x[2, 1] = np.nan
  with pytest.raises(data.DataError, match="NaN.*rows \\[2\\]"):
    data.check_finite(x, "toy")


def test_nan_inputs_rejected_on_load(monkeypatch):
  x, y, xt, yt = bundled.digits_arrays()
  x = x.copy()
  x[7, 0, 0, 0] = np.nan
  monkeypatch.setattr(bundled, "digits_arrays", lambda: (x, y, xt, yt))
  with pytest.raises(data.DataError, match="digits train: non-finite .*rows \\[7\\]"):
    data.load_dataset("digits")


def test_shard_ranges_disjoint_and_covering():
  for n in (10, 11, 1797):
    for count in (1, 2, 3, 8):
      ranges = [data.shard_range(n, i, count) for i in range(count)]
      covered = np.concatenate([np.arange(s, e) for s, e in ranges])
      np.testing.assert_array_equal(covered, np.arange(n))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  from core.data import tfds_builders
  d = str(tmp_path_factory.mktemp("tfds"))
  tfds_builders.prepare("digits", d)
  tfds_builders.prepare("mnist1d", d, num_train=300, num_test=100)
  return d


def test_tfds_path_matches_numpy_path(tfds_dir, digits):
  t = data.load_dataset("digits", source="tfds", data_dir=tfds_dir)
  np.testing.assert_array_equal(t.train.ids, digits.train.ids)
  np.testing.assert_array_equal(t.train.y, digits.train.y)
  np.testing.assert_allclose(t.train.x, digits.train.x, atol=1e-6)
  np.testing.assert_array_equal(t.test.y, digits.test.y)
  m = data.load_dataset("mnist1d", source="tfds", data_dir=tfds_dir, num_train=300, num_test=100)
  n = data.load_dataset("mnist1d", num_train=300, num_test=100)
  np.testing.assert_allclose(m.train.x, n.train.x, atol=1e-6)
  assert m.train.x.shape == (300, 40, 1)


def test_tfds_shards_for_two_processes_are_disjoint_and_cover(tfds_dir):
  shards = [data.load_dataset("digits", source="tfds", data_dir=tfds_dir, shard="both",
                              process_index=i, process_count=2, normalization="none")
            for i in range(2)]
  full = data.load_dataset("digits", source="tfds", data_dir=tfds_dir, normalization="none")
  for split in ("train", "test"):
    a, b = (getattr(s, split) for s in shards)
    assert not set(a.ids) & set(b.ids)
    ids = np.concatenate([a.ids, b.ids])
    np.testing.assert_array_equal(np.sort(ids), getattr(full, split).ids)
    x = np.concatenate([a.x, b.x])
    np.testing.assert_array_equal(x, getattr(full, split).subset(ids).x)
  assert abs(len(shards[0].train) - len(shards[1].train)) <= 1


def test_tfds_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(data.DataError, match="not prepared.*download_and_prepare"):
    data.load_dataset("cifar10", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="b.prepare\\('digits'"):
    data.load_dataset("digits", source="tfds", data_dir=str(tmp_path))
  with pytest.raises(data.DataError, match="unknown dataset 'no_such_dataset'"):
    data.load_dataset("no_such_dataset", data_dir=str(tmp_path))
