"""Offline TFDS builders for the bundled datasets (no download step).

`Digits` ("digits") and `Mnist1d` ("mnist1d") write the same arrays as
`core.data`'s numpy path into TFDS's record format, so the TFDS code path
(prepare, load, shard across hosts) runs and is tested without a network.
Each example carries an integer `example_id` equal to its numpy-path id.

    python -c "import core.data.tfds_builders as b; b.prepare('digits', '/tmp/tfds')"
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from core.data.bundled import MNIST1D_DEFAULT, digits_arrays, mnist1d_arrays
from core.data.types import DataError


def _features(example_shape):
  return tfds.features.FeaturesDict({
      "image": tfds.features.Tensor(shape=example_shape, dtype=np.float32),
      "label": tfds.features.ClassLabel(num_classes=10),
      "example_id": np.int64,
  })


def _examples(x, y):
  for i in range(len(x)):
    yield i, {"image": x[i], "label": int(y[i]), "example_id": i}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn 8x8 digits with the fixed split of `core.data`."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(
        features=_features((8, 8, 1)), supervised_keys=("image", "label"),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    x, y, xt, yt = digits_arrays()
    return {"train": _examples(x, y), "test": _examples(xt, yt)}

  def _generate_examples(self):  # required by the base class; splits above
    raise NotImplementedError


@dataclasses.dataclass
class Mnist1dConfig(tfds.core.BuilderConfig):
  num_train: int = 4000
  num_test: int = 1000
  seed: int = 42


def mnist1d_config(num_train=None, num_test=None, seed=None) -> Mnist1dConfig:
  d = MNIST1D_DEFAULT
  nt, ns, s = num_train or d["num_train"], num_test or d["num_test"], d["seed"] if seed is None else seed
  return Mnist1dConfig(name=f"n{nt}_{ns}_s{s}", num_train=nt, num_test=ns, seed=s)


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D from the `mnist1d` generator; one config per (sizes, seed)."""
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [mnist1d_config()]

  def _info(self):
    return self.dataset_info_from_configs(
        features=_features((40, 1)), supervised_keys=("image", "label"),
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    c = self.builder_config
    x, y, xt, yt = mnist1d_arrays(c.num_train, c.num_test, c.seed)
    return {"train": _examples(x, y), "test": _examples(xt, yt)}

  def _generate_examples(self):
    raise NotImplementedError


OFFLINE_BUILDERS = {"digits": Digits, "mnist1d": Mnist1d}


def offline_builder(name: str, data_dir: str, num_train=None, num_test=None, seed=None):
  if name == "digits":
    if num_train or num_test:
      raise DataError("digits has a fixed split; num_train/num_test must be unset")
    return Digits(data_dir=data_dir)
  if name == "mnist1d":
    return Mnist1d(data_dir=data_dir, config=mnist1d_config(num_train, num_test, seed))
  raise DataError(f"no offline builder for {name!r}; offline: {tuple(OFFLINE_BUILDERS)}")


def prepare(name: str, data_dir: str, **kwargs):
  """Writes the offline dataset into `data_dir` (no network); returns the builder."""
  builder = offline_builder(name, data_dir, **kwargs)
  builder.download_and_prepare()
  return builder
