"""Score shards (pruning.score_io): one shard per process, merged into one verified file.

Two processes (jax.distributed on localhost, gloo) give the same merged score file as one
process; missing, corrupt, duplicated or incomplete shards fail naming the shard files.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.data import ArrayDataset
from pruning import score_io

WORKER = os.path.join(os.path.dirname(__file__), "multihost_scores_worker.py")


def _dataset(n=11):
  rng = np.random.default_rng(0)
  ids = rng.permutation(np.arange(100, 100 + n)).astype(np.int64)  # not sorted
  return ArrayDataset(rng.normal(size=(n, 3)).astype(np.float32),
                      rng.integers(0, 2, n).astype(np.int32), ids, 2, "toy/train")


def _result(ds):
  rng = np.random.default_rng(1)
  per_run = rng.normal(size=(3, len(ds)))
  return score_io.ScoreResult(ds.ids.copy(), per_run.mean(0), dict(
      method="el2n", dataset="toy", fingerprint=ds.fingerprint(), num_examples=len(ds)),
      per_run)


def _contents(path):
  f = np.load(path, allow_pickle=False)
  return {k: f[k] for k in f.files}


def _write_shards(path, ds, res, count):
  return [score_io.write_shard(path, i, count,
                               res.subset(score_io.process_ids(ds.ids, i, count)))
          for i in range(count)]


@pytest.mark.parametrize("count", [2, 3])
def test_merged_shards_equal_the_one_process_file(tmp_path, count):
  ds = _dataset()
  res = _result(ds)
  one = score_io.save(str(tmp_path / "one.npz"), res)
  path = str(tmp_path / "merged.npz")
  shards = _write_shards(path, ds, res, count)
  assert [os.path.basename(p) for p in shards] == [
      f"merged.npz.shard-{i:05d}-of-{count:05d}.npz" for i in range(count)]
  sizes = [len(np.load(p)["ids"]) for p in shards]
  assert sum(sizes) == len(ds) and max(sizes) - min(sizes) <= 1
  score_io.merge_shards(path, count, ds)
  a, b = _contents(one), _contents(path)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])  # same ids order, scores, per_run and metadata
  assert sorted(os.listdir(tmp_path)) == ["merged.npz", "one.npz"]  # shards removed
  back = score_io.load(path, ds)
  np.testing.assert_array_equal(back.per_run, res.per_run)


def test_missing_shard_fails_naming_the_file(tmp_path):
  ds = _dataset()
  path = str(tmp_path / "s.npz")
  shards = _write_shards(path, ds, _result(ds), 2)
  os.remove(shards[1])
  with pytest.raises(score_io.ScoreShardError, match=r"missing.*s\.npz\.shard-00001-of-00002"):
    score_io.merge_shards(path, 2, ds)
  assert not os.path.exists(path)


def test_duplicated_ids_fail_naming_the_shards_and_ids(tmp_path):
  ds = _dataset()
  res = _result(ds)
  path = str(tmp_path / "s.npz")
  first = score_io.process_ids(ds.ids, 0, 2)
  second = np.concatenate([score_io.process_ids(ds.ids, 1, 2), first[:1]])
  score_io.write_shard(path, 0, 2, res.subset(first))
  score_io.write_shard(path, 1, 2, res.subset(second))
  with pytest.raises(score_io.ScoreShardError) as e:
    score_io.merge_shards(path, 2, ds)
  msg = str(e.value)
  assert "shard-00000-of-00002" in msg and "shard-00001-of-00002" in msg
  assert f"more than once: [{int(first[0])}]" in msg
  assert not os.path.exists(path)


def test_missing_ids_fail_naming_them(tmp_path):
  ds = _dataset()
  res = _result(ds)
  path = str(tmp_path / "s.npz")
  second = score_io.process_ids(ds.ids, 1, 2)
  score_io.write_shard(path, 0, 2, res.subset(score_io.process_ids(ds.ids, 0, 2)))
  score_io.write_shard(path, 1, 2, res.subset(second[1:]))
  with pytest.raises(score_io.ScoreShardError,
                     match=rf"s\.npz\.shard.*1 ids missing \[{int(second[0])}\]"):
    score_io.merge_shards(path, 2, ds)


def test_corrupt_or_foreign_shard_fails_naming_it(tmp_path):
  ds = _dataset()
  res = _result(ds)
  path = str(tmp_path / "s.npz")
  shards = _write_shards(path, ds, res, 2)
  f = _contents(shards[1])
  f["scores"] = f["scores"][::-1].copy()  # re-paired ids and scores: the digest catches it
  np.savez(shards[1], **f)
  with pytest.raises(score_io.ScoreShardError, match=r"shard-00001-of-00002.*digest"):
    score_io.merge_shards(path, 2, ds)
  shards = _write_shards(path, ds, res, 2)
  other = _result(ds)
  other.meta["fingerprint"] = "elsewhere"
  score_io.write_shard(path, 1, 2, other.subset(score_io.process_ids(ds.ids, 1, 2)))
  with pytest.raises(score_io.ScoreShardError, match=r"disagree on metadata \['fingerprint'\]"):
    score_io.merge_shards(path, 2, ds)


def test_single_process_cache_unchanged(tmp_path):
  """One process: `cached` writes the score file itself (no shard), as before, and an
  existing file is reused as it is."""
  ds = _dataset()
  res = _result(ds)
  calls = []
  got = score_io.cached(str(tmp_path), "el2n", {"a": 1}, ds, lambda: calls.append(1) or res)
  path = score_io.path_for(str(tmp_path), "el2n", {"a": 1}, ds)
  assert os.listdir(tmp_path) == [os.path.basename(path)] and got is res
  again = score_io.cached(str(tmp_path), "el2n", {"a": 1}, ds, lambda: calls.append(1) or res)
  assert calls == [1]
  np.testing.assert_array_equal(again.scores, res.scores)
  meta = json.loads(str(np.load(path)["meta_json"]))
  assert "shard_index" not in meta and "shard_count" not in meta


def _launch(pid, nproc, port, ndev, *args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.Popen([sys.executable, WORKER, str(pid), str(nproc), str(port), str(ndev),
                           *map(str, args)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          cwd=os.path.dirname(os.path.dirname(WORKER)))


@pytest.mark.slow
def test_two_processes_write_the_same_score_file_as_one(tmp_path):
  """2 processes x 1 device reading record files (shards + merge) == 1 process x 2 devices in
  memory (one file): the same file name, ids, scores, per-run scores and metadata; no shard
  left behind."""
  from core.data import load_dataset, records
  from test_multihost import free_port, wait
  records.write_splits(load_dataset("digits", normalization="none"), str(tmp_path / "rec"))
  port = free_port()
  multi = [_launch(i, 2, port, 1, tmp_path / "multi", tmp_path / "rec") for i in range(2)]
  single = _launch(0, 1, 0, 2, tmp_path / "single")
  outs = wait(multi + [single], timeout=300)
  assert "process 1: done" in outs[1]
  (m_name,), (s_name,) = os.listdir(tmp_path / "multi"), os.listdir(tmp_path / "single")
  assert m_name == s_name
  m, s = _contents(tmp_path / "multi" / m_name), _contents(tmp_path / "single" / s_name)
  assert sorted(m) == sorted(s) == ["ids", "meta_json", "per_run", "scores"]
  for k in ("ids", "per_run", "scores"):
    np.testing.assert_array_equal(m[k], s[k])
  # the metadata too, but for the compute time each run measured for itself
  m_meta, s_meta = (json.loads(str(f["meta_json"])) for f in (m, s))
  assert m_meta.pop("compute_seconds") > 0 and s_meta.pop("compute_seconds") > 0
  assert m_meta == s_meta
  assert len(m["ids"]) == 1437


def test_compute_time_is_recorded_kept_on_reuse_and_the_slowest_shard_wins(tmp_path):
  """The controls' cost column reads `compute_seconds` from the score file: written when
  computed, the same when the file is reused, and over shards (each process times itself,
  so they may differ without the merge refusing them) the slowest process's."""
  import time
  ds = _dataset()
  calls = []

  def compute():
    calls.append(1)
    time.sleep(0.05)
    return _result(ds)

  first = score_io.cached(str(tmp_path / "c"), "el2n", {"a": 1}, ds, compute)
  again = score_io.cached(str(tmp_path / "c"), "el2n", {"a": 1}, ds, compute)
  assert len(calls) == 1 and first.meta["compute_seconds"] >= 0.05
  assert again.meta["compute_seconds"] == first.meta["compute_seconds"]
  res = _result(ds)
  path = str(tmp_path / "s.npz")
  for i, sec in enumerate([3.5, 7.25]):
    mine = res.subset(score_io.process_ids(ds.ids, i, 2))
    mine.meta["compute_seconds"] = sec
    score_io.write_shard(path, i, 2, mine)
  assert score_io.merge_shards(path, 2, ds).meta["compute_seconds"] == 7.25
  assert score_io.load(path, ds).meta["compute_seconds"] == 7.25
