"""The ImageNet config (core/configs/imagenet_resnet50.py) and the ImageNet ResNets.

The data here is SYNTHETIC (random pixels, random labels), ImageNet-shaped except for the
image size (64x64 instead of 224x224, so one CPU step is fast): it checks that the config
validates and that its model builds and trains on record files, not any accuracy.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import train
from core.configs import imagenet_resnet50
from core.data import ArrayDataset, records
from core.models import create_model


def _param_shapes(cfg, shape):
  m = create_model(cfg)
  v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros(shape)))
  return jax.tree.map(lambda a: a.shape, v["params"])


def _count(shapes):
  return sum(int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(
      x, tuple)))


def test_resnet_stems_and_blocks():
  cifar = _param_shapes(dict(name="resnet18"), (1, 32, 32, 3))
  assert cifar == _param_shapes(dict(name="resnet18", stem="cifar"), (1, 32, 32, 3))
  assert cifar["Conv_0"]["kernel"] == (3, 3, 3, 64)      # the CIFAR stem, unchanged
  assert _count(cifar) == 11_173_962
  r18 = _param_shapes(dict(name="resnet18", stem="imagenet", num_classes=1000),
                      (1, 224, 224, 3))
  r50 = _param_shapes(dict(name="resnet50", stem="imagenet", num_classes=1000),
                      (1, 224, 224, 3))
  assert r18["Conv_0"]["kernel"] == r50["Conv_0"]["kernel"] == (7, 7, 3, 64)
  assert _count(r18) == 11_689_512 and _count(r50) == 25_557_032  # torchvision's counts
  assert r50["Dense_0"]["kernel"] == (2048, 1000)
  # 224 -> 112 (7x7/2 conv) -> 56 (3x3/2 max-pool) -> 7 after the three strided stages
  m = create_model(dict(name="resnet50", stem="imagenet", num_classes=10, width=8))
  x = jnp.zeros((1, 224, 224, 3))
  v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), x))
  _, inter = jax.eval_shape(lambda v: m.apply(v, x, capture_intermediates=True,
                                              mutable=["intermediates"]), v)
  assert inter["intermediates"]["BottleneckBlock_15"]["__call__"][0].shape == (1, 7, 7, 256)
  with pytest.raises(ValueError, match="unknown stem 'tiny'"):
    jax.eval_shape(lambda: create_model(dict(name="resnet18", stem="tiny")).init(
        jax.random.PRNGKey(0), x[:, :32, :32]))


def test_config_args():
  c = imagenet_resnet50.get_config()
  assert c.model.name == "resnet50" and c.batch_size == 1024 and c.optimizer.lr == 0.4
  assert c.dataset.to_dict() == dict(name="imagenet2012", source="records", data_dir=None,
                                     normalization="per_channel")
  assert imagenet_resnet50.get_config("resnet18").optimizer.lr == 0.1
  with pytest.raises(ValueError, match="unknown config arg 'huge'"):
    imagenet_resnet50.get_config("huge")
  from experiments.configs import imagenet_prune_sweep
  sweep = imagenet_prune_sweep.get_config()
  assert sweep.train.model.name == "resnet50" and sweep.train.dataset.source == "records"
  assert sweep.budget == "epochs" and sweep.num_epochs == 90
  assert imagenet_prune_sweep.get_config("resnet18").train.model.name == "resnet18"


@pytest.fixture(scope="module")
def synthetic_imagenet(tmp_path_factory):
  """SYNTHETIC uint8 record set named imagenet2012: 64x64x3, 1000 classes, random labels."""
  d = tmp_path_factory.mktemp("synthetic_imagenet")
  rng = np.random.default_rng(0)
  stats = None
  for split, n in (("train", 48), ("test", 8)):
    x = rng.integers(0, 256, (n, 64, 64, 3)).astype(np.float32) / 255.0
    ds = ArrayDataset(x, rng.integers(0, 1000, n).astype(np.int32),
                      np.arange(n, dtype=np.int64) * 7 + 3, 1000, f"imagenet2012/{split}")
    p = records.write_records(iter([ds]), str(d / split), records_per_shard=20,
                              x_dtype="uint8", stats_from=stats)
    stats = records.RecordDataset(p).meta["stats"]
  return str(d)


def _train(arg, data_dir):
  c = imagenet_resnet50.get_config(arg)
  c.dataset.data_dir = data_dir
  c.update(progress_bar=False, num_devices=1)
  return train.train_and_evaluate(c)


@pytest.mark.slow
def test_resnet18_config_trains_on_synthetic_records(synthetic_imagenet):
  r = _train("resnet18,quick", synthetic_imagenet)
  assert r.model.stem == "imagenet" and r.model.block == "basic"
  assert int(r.state.step) == 2 and np.isfinite(r.metrics["train_loss"])
  assert 0.0 <= r.metrics["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_resnet50_config_trains_on_synthetic_records(synthetic_imagenet):
  r = _train("quick", synthetic_imagenet)
  assert r.model.block == "bottleneck"
  assert int(r.state.step) == 2 and np.isfinite(r.metrics["train_loss"])
