"""Streamed record datasets (core.data.records) against the in-memory path.

Training (1 and 8 devices), EL2N scoring through pruning.scores.compute_scores, core.predict,
exact coverage with padding, bit-identical resume of a killed streamed run, and corrupt files.
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from core import predict as predict_lib
from core import train
from core.config import base_config
from core.data import ArrayDataset, DataError, load_dataset
from core.data import records
from core.models import create_model
from core.state import create_train_state
from pruning import scores


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("records") / "digits")
  records.prepare_bundled("digits", d, num_shards=3)
  return d


@pytest.fixture(scope="module")
def both(rec_dir):
  return load_dataset("digits"), load_dataset("digits", source="records", data_dir=rec_dir)


def small_config(**kw):
  c = base_config()
  c.model = ml_collections.ConfigDict(dict(name="mlp", hidden=(32,)))
  c.batch_size = 64
  c.num_steps = 6
  c.optimizer.update(name="sgd", lr=0.05, momentum=0.9, schedule="cosine")
  c.progress_bar = False
  c.checkpoint = False
  c.log_every_steps = 2
  c.update(kw)
  return c


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state.params)]


@pytest.mark.parametrize("norm", ["none", "standardize", "per_channel"])
def test_gather_is_bit_identical_to_memory(rec_dir, norm):
  mem = load_dataset("digits", normalization=norm)
  rec = load_dataset("digits", source="records", data_dir=rec_dir, normalization=norm)
  for split in ("train", "test"):
    a, b = getattr(mem, split), getattr(rec, split)
    assert isinstance(b, records.RecordDataset) and len(b.meta["shards"]) == 3
    pos = np.random.default_rng(0).integers(0, len(a), 300)  # across shards, with repeats
    x, y = b.gather(pos)
    assert x.dtype == a.x.dtype and x.shape == (300,) + a.example_shape
    np.testing.assert_array_equal(x, a.x[pos])
    np.testing.assert_array_equal(y, a.y[pos])
    np.testing.assert_array_equal(b.ids, a.ids)
    assert b.fingerprint() == a.fingerprint() and b.num_classes == a.num_classes == 10
  sub_ids = mem.train.ids[[700, 3, 1200]]
  xs, ys = rec.train.subset(sub_ids).gather([2, 0, 1, 2])
  np.testing.assert_array_equal(xs, mem.train.subset(sub_ids).x[[2, 0, 1, 2]])
  with pytest.raises(DataError, match="gather"):
    rec.train.x


def test_chunked_writer_mnist1d_any_size(tmp_path):
  """MNIST-1D at a non-default size written in chunks (never all at once), 2 shards."""
  mem = load_dataset("mnist1d", normalization="none", num_train=1000, num_test=200, seed=3)
  tr = mem.train
  chunks = (ArrayDataset(tr.x[i:i + 300], tr.y[i:i + 300], tr.ids[i:i + 300], 10, tr.name)
            for i in range(0, 1000, 300))
  p = records.write_records(chunks, str(tmp_path / "train"), records_per_shard=600)
  rec = records.RecordDataset(p)
  assert [s["num_records"] for s in rec.meta["shards"]] == [600, 400]
  x, y = rec.gather(np.arange(1000))
  np.testing.assert_array_equal(x, tr.x)
  np.testing.assert_array_equal(y, tr.y)
  # Streamed statistics equal numpy's up to rounding.
  mean, std = records._stats_from_json(rec.meta["stats"], "standardize")
  np.testing.assert_allclose(mean.ravel(), tr.x.mean(dtype=np.float64), rtol=1e-9)
  np.testing.assert_allclose(std.ravel(), tr.x.std(dtype=np.float64) + 1e-8, rtol=1e-9)
  with pytest.raises(DataError, match="already exists"):
    records.write_records(tr, p)


@pytest.mark.parametrize("num_devices", [1, 8])
def test_streamed_training_equals_in_memory(both, num_devices):
  mem, rec = both
  ids = mem.train.ids[::2][:500]  # a pruned subset = a list of ids
  cfg = small_config(num_devices=num_devices)
  a = train.train_and_evaluate(cfg, data=mem, train_ids=ids)
  b = train.train_and_evaluate(cfg, data=rec, train_ids=ids)
  assert a.metrics["steps"] == b.metrics["steps"] == 6
  for u, v in zip(leaves(a.state), leaves(b.state)):
    np.testing.assert_array_equal(u, v)
  assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
  init = create_train_state(cfg, a.model, (8, 8, 1), 0)
  assert not np.allclose(leaves(init)[0], leaves(b.state)[0])  # it trained


def test_streamed_el2n_scores_equal_in_memory(both):
  mem, rec = both
  cfg = dict(train=small_config(num_steps=None, num_epochs=2, num_devices=8),
             el2n=dict(epoch=1, num_runs=1), predict_batch_size=200)
  a = scores.compute_scores("el2n", mem, cfg)
  b = scores.compute_scores("el2n", rec, cfg)
  np.testing.assert_array_equal(a.ids, b.ids)
  np.testing.assert_array_equal(a.scores, b.scores)
  assert a.meta["fingerprint"] == b.meta["fingerprint"]
  assert np.std(b.scores) > 0


@pytest.mark.parametrize("n,batch", [(1437, 200), (333, 64), (5, 16)])
def test_predict_scores_every_id_once(both, n, batch):
  """Sizes not a multiple of the batch (nor of the 8 devices): padded, masked, once each."""
  mem, rec = both
  ids = np.random.default_rng(n).permutation(mem.train.ids)[:n]  # unsorted subset
  cfg = small_config()
  model = create_model(cfg.model, num_classes=10)
  state = create_train_state(cfg, model, (8, 8, 1), 0)
  a = predict_lib.predict(model, state, mem.train.subset(ids), batch,
                          reduce_fn=scores.el2n_reduce)
  b = predict_lib.predict(model, state, rec.train.subset(ids), batch,
                          reduce_fn=scores.el2n_reduce)
  np.testing.assert_array_equal(b["ids"], ids)
  assert len(np.unique(b["ids"])) == n
  np.testing.assert_array_equal(a["el2n"], b["el2n"])
  logits = predict_lib.predict(model, state, rec.train.subset(ids), batch)["logits"]
  np.testing.assert_allclose(b["el2n"], scores.el2n_from_logits(logits, mem.train.subset(ids).y),
                             rtol=1e-5, atol=1e-6)


def test_killed_streamed_run_resumes_bit_identically(both, tmp_path):
  _, rec = both
  cfg = small_config(num_steps=8, checkpoint=True, checkpoint_every_steps=2, num_devices=8)
  ids = rec.train.ids[:400]
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), data=rec, train_ids=ids)
  killed = small_config(num_steps=8, checkpoint=True, checkpoint_every_steps=2, num_devices=8,
                        stop_after_steps=5)
  part = train.train_and_evaluate(killed, str(tmp_path / "resumed"), data=rec, train_ids=ids)
  assert part.metrics["stopped_at_step"] == 5
  res = train.train_and_evaluate(cfg, str(tmp_path / "resumed"), data=rec, train_ids=ids)
  assert res.metrics["steps"] == 8
  for u, v in zip(leaves(full.state), leaves(res.state)):
    np.testing.assert_array_equal(u, v)


def _copy(src, dst):
  import shutil
  shutil.copytree(src, dst)
  return dst


def test_truncated_or_corrupt_files_name_the_file(rec_dir, tmp_path):
  # Truncated shard.
  d = _copy(os.path.join(rec_dir, "train"), str(tmp_path / "trunc"))
  f = os.path.join(d, "records-00001-of-00003.array_record")
  with open(f, "rb") as fh:
    b = fh.read()
  with open(f, "wb") as fh:
    fh.write(b[:len(b) // 2])
  ds = records.RecordDataset(d)
  ds.gather([0])  # shard 0 is intact
  with pytest.raises(records.CorruptRecordsError,
                     match=f"{f} has [0-9]+ bytes, meta.json says [0-9]+: truncated"):
    ds.gather([len(ds) // 2])
  # Flipped bytes inside a record: the chunk hash catches it.
  d = _copy(os.path.join(rec_dir, "train"), str(tmp_path / "flip"))
  f = os.path.join(d, "records-00000-of-00003.array_record")
  ba = bytearray(open(f, "rb").read())
  for k in range(1000, 60000, 97):
    ba[k] ^= 0x5A
  open(f, "wb").write(bytes(ba))
  ds = records.RecordDataset(d)
  with pytest.raises(records.CorruptRecordsError, match=f"record file {f}"):
    ds.gather(np.arange(400))
  # Missing shard, truncated index, corrupt meta.
  d = _copy(os.path.join(rec_dir, "train"), str(tmp_path / "missing"))
  os.remove(os.path.join(d, "records-00002-of-00003.array_record"))
  with pytest.raises(records.CorruptRecordsError, match="records-00002-of-00003.*missing"):
    records.RecordDataset(d).gather([len(records.RecordDataset(d)) - 1])
  d = _copy(os.path.join(rec_dir, "train"), str(tmp_path / "index"))
  with open(os.path.join(d, "index.npz"), "r+b") as fh:
    fh.truncate(100)
  with pytest.raises(records.CorruptRecordsError, match=os.path.join(d, "index.npz")):
    records.RecordDataset(d)
  d = _copy(os.path.join(rec_dir, "train"), str(tmp_path / "meta"))
  with open(os.path.join(d, "meta.json"), "w") as fh:
    fh.write(json.dumps({"format": records.FORMAT})[:-3])
  with pytest.raises(records.CorruptRecordsError, match=os.path.join(d, "meta.json")):
    records.RecordDataset(d)
  with pytest.raises(DataError, match="no record set"):
    load_dataset("digits", source="records", data_dir=str(tmp_path / "nowhere"))
  with pytest.raises(DataError, match="holds 'digits/train', not 'mnist1d'"):
    load_dataset("mnist1d", source="records", data_dir=rec_dir)


@pytest.mark.slow
def test_two_processes_streamed_match_one_process(rec_dir, tmp_path):
  """2 processes x 2 devices reading record files == 1 process x 4 devices; each process
  reads only its half of every global batch (checked inside the worker)."""
  import subprocess
  import sys
  from test_multihost import free_port, wait
  worker = os.path.join(os.path.dirname(__file__), "multihost_records_worker.py")

  def launch(pid, nproc, port, ndev, out):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen([sys.executable, worker, str(pid), str(nproc), str(port),
                             str(ndev), rec_dir, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

  port = free_port()
  procs = [launch(i, 2, port, 2, tmp_path / "multi.npz") for i in range(2)]
  procs.append(launch(0, 1, 0, 4, tmp_path / "single.npz"))
  outs = wait(procs)
  assert "process 1: done" in outs[1]
  m, s = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
  assert int(m["process_count"]) == 2 and int(s["process_count"]) == 1
  assert int(m["device_count"]) == int(s["device_count"]) == 4
  for i in range(int(m["n_leaves"])):
    np.testing.assert_allclose(m[f"p{i}"], s[f"p{i}"], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(m["ids"], s["ids"])
  np.testing.assert_allclose(m["el2n"], s["el2n"], rtol=1e-4, atol=1e-5)


def test_synthetic_imagenet_shaped_uint8_records(tmp_path):
  """SYNTHETIC data (random pixels, random labels), ImageNet-shaped: 224x224x3 uint8 images,
  1000 classes, written in chunks as uint8 (what prepare_tfds does) and gathered as
  float32 / 255 - the input pipeline of an ImageNet run, not its accuracy."""
  rng = np.random.default_rng(0)
  n = 24
  raw = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
  ids = rng.permutation(10 ** 6)[:n].astype(np.int64)  # sparse ids, not positions
  y = rng.integers(0, 1000, n).astype(np.int32)
  chunks = (ArrayDataset(raw[i:i + 10].astype(np.float32) / 255.0, y[i:i + 10], ids[i:i + 10],
                         1000, "synthetic_imagenet/train") for i in range(0, n, 10))
  p = records.write_records(chunks, str(tmp_path / "train"), records_per_shard=16,
                            x_dtype="uint8")
  ds = records.RecordDataset(p, normalization="per_channel")
  assert ds.meta["decode"] == "uint8_div255" and len(ds.meta["shards"]) == 2
  assert ds.example_shape == (224, 224, 3) and ds.num_classes == 1000
  sub = ds.subset(ids[[20, 3, 17, 0]])
  x, yy = sub.gather(np.arange(4))
  want = raw[[20, 3, 17, 0]].astype(np.float32) / np.float32(255.0)
  mean, std = records._stats_from_json(ds.meta["stats"], "per_channel")
  np.testing.assert_array_equal(x, ((want - mean) / std).astype(np.float32))
  np.testing.assert_array_equal(yy, y[[20, 3, 17, 0]])
  assert ds.io["records_read"] == 4  # only the requested records were read
  np.testing.assert_allclose(mean.ravel(), (raw / 255.0).mean(axis=(0, 1, 2)), rtol=1e-6)


def test_streamed_forgetting_equals_in_memory(both):
  """Forgetting counts from the trainer's per-example step callback, on record files."""
  mem, rec = both
  cfg = dict(train=small_config(num_steps=None, num_epochs=2, num_devices=8),
             forgetting=dict(num_runs=1, record="minibatch"))
  a = scores.compute_scores("forgetting", mem, cfg)
  b = scores.compute_scores("forgetting", rec, cfg)
  np.testing.assert_array_equal(a.ids, b.ids)
  np.testing.assert_array_equal(a.scores, b.scores)
  assert b.scores.max() > b.scores.min()


def test_streamed_rholoss_batch_source_equals_in_memory(both):
  """RHO-LOSS candidate losses (ctx.eval_losses) read through gather: same selections and
  parameters on record files as in memory."""
  from pruning import rholoss
  mem, rec = both
  il = rholoss.ILLosses(mem.train.ids, np.random.default_rng(0).random(len(mem.train)))
  out = {}
  for name, data in (("mem", mem), ("rec", rec)):
    sel = rholoss.BatchSelector("rholoss", il)
    r = train.train_and_evaluate(small_config(batch_size=16, num_devices=8), data=data,
                                 batch_source=rholoss.RhoLossSource(sel, 64))
    out[name] = (sel.log, leaves(r.state))
  assert len(out["rec"][0]) == 6
  for (s1, i1), (s2, i2) in zip(out["mem"][0], out["rec"][0]):
    assert s1 == s2
    np.testing.assert_array_equal(i1, i2)
  for u, v in zip(out["mem"][1], out["rec"][1]):
    np.testing.assert_array_equal(u, v)


def test_prepare_tfds_matches_the_in_memory_tfds_path(tmp_path):
  """The TFDS record writer (the one for imagenet2012) streams a prepared TFDS dataset in
  chunks through the same example map as the in-memory TFDS reader: the same ids, labels and
  inputs (float32 here; uint8 storage is covered by the synthetic ImageNet-shaped test)."""
  from core.data import load_dataset, tfds_builders
  tfds_dir = str(tmp_path / "tfds")
  tfds_builders.prepare("digits", tfds_dir)
  out = records.prepare_tfds("digits", tfds_dir, str(tmp_path / "rec"), x_dtype=None,
                             chunk_size=500, records_per_shard=600)
  mem = load_dataset("digits", source="tfds", data_dir=tfds_dir, normalization="none")
  rec = load_dataset("digits", source="records", data_dir=out, normalization="none")
  for split in ("train", "test"):
    m, r = getattr(mem, split), getattr(rec, split).to_arrays()
    order = np.argsort(r.ids)
    np.testing.assert_array_equal(r.ids[order], m.ids)
    np.testing.assert_array_equal(r.y[order], m.y)
    np.testing.assert_array_equal(r.x[order], m.x)
  assert len(rec.train.meta["shards"]) == 3  # 1437 records, 600 per shard
