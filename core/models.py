"""Flax linen models for the pruning / distillation experiments.

Every model is called as ``model.apply(variables, x, train=False,
return_embedding=False)`` and returns logits of shape (n, num_classes), or
``(logits, embedding)`` with the penultimate representation (n, d) when
``return_embedding=True``.

Inputs are channels-last: (n, H, W, C) images or (n, L, C) sequences.

  * ``mlp``       - MLP on the flattened input.
  * ``cnn``       - small 2-D CNN for 8x8 digits (2 conv + avgpool + 2 dense).
  * ``cnn1d``     - the MNIST-1D authors' CNN: 3 conv1d layers of 25 channels
                    (kernels 5, 3, 3; stride 2; padding 1; ReLU) + linear.
  * ``resnet18``  - ResNet-18 (basic blocks). ``stem="cifar"`` (default): 3x3
                    stride-1 stem, no max-pool, as in Data Diet; ``stem="imagenet"``:
                    7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (He et al. 2016).
                    BatchNorm; inside the pmapped trainer the batch statistics
                    are synchronised across devices (``bn_axis_name``).
  * ``resnet50``  - ResNet-50: bottleneck blocks (1x1, 3x3 with the stride, 1x1 with 4x
                    the width: "v1.5", as torchvision and the Flax ImageNet example),
                    stages (3, 4, 6, 3); same ``stem`` choice (configs use "imagenet").
  * ``convnet``   - KIP / dataset-condensation ConvNet: ``depth`` blocks of
                    conv3x3 -> norm -> ReLU -> avgpool 2x2 (a pool is skipped once
                    the spatial size is 1, so depth 3 works on 8x8 digits),
                    dense head. Works on 2-D images and 1-D sequences
                    (``convnet1d`` is an alias).

``create_model(config.model)`` builds one from a ConfigDict / dict with a
``name`` and the model's keyword arguments.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp


def _out(logits, emb, return_embedding):
  return (logits, emb) if return_embedding else logits


class MLP(nn.Module):
  num_classes: int = 10
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, x, train: bool = False, return_embedding: bool = False):
    h = x.reshape((x.shape[0], -1))
    for w in self.hidden:
      h = nn.relu(nn.Dense(w)(h))
    logits = nn.Dense(self.num_classes)(h)
    return _out(logits, h, return_embedding)


class SmallCNN(nn.Module):
  """2-D CNN for small images (8x8 digits): conv-conv-pool-dense-dense."""
  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  dense: int = 128

  @nn.compact
  def __call__(self, x, train: bool = False, return_embedding: bool = False):
    h = x
    for c in self.channels:
      h = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(h))
    if min(h.shape[1:-1]) >= 2:
      h = nn.avg_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape((h.shape[0], -1))
    h = nn.relu(nn.Dense(self.dense)(h))
    logits = nn.Dense(self.num_classes)(h)
    return _out(logits, h, return_embedding)


class CNN1D(nn.Module):
  """The MNIST-1D authors' ConvBase (Greydanus 2020): ~94% on MNIST-1D."""
  num_classes: int = 10
  channels: int = 25
  kernels: Sequence[int] = (5, 3, 3)
  stride: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False, return_embedding: bool = False):
    h = x if x.ndim == 3 else x.reshape((x.shape[0], -1, 1))
    for k in self.kernels:
      h = nn.relu(nn.Conv(self.channels, (k,), strides=(self.stride,),
                          padding=[(1, 1)])(h))
    h = h.reshape((h.shape[0], -1))
    logits = nn.Dense(self.num_classes)(h)
    return _out(logits, h, return_embedding)


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1
  norm: Callable = nn.BatchNorm

  @nn.compact
  def __call__(self, x):
    y = nn.Conv(self.filters, (3, 3), (self.strides, self.strides), padding=[(1, 1), (1, 1)],
                use_bias=False)(x)
    y = nn.relu(self.norm()(y))
    y = nn.Conv(self.filters, (3, 3), padding=[(1, 1), (1, 1)], use_bias=False)(y)
    y = self.norm(scale_init=nn.initializers.ones)(y)
    if x.shape != y.shape:
      x = nn.Conv(self.filters, (1, 1), (self.strides, self.strides), use_bias=False)(x)
      x = self.norm()(x)
    return nn.relu(x + y)


class BottleneckBlock(nn.Module):
  """1x1 (filters) -> 3x3 (filters, stride) -> 1x1 (4 filters), projection when the shape
  changes; the stride sits in the 3x3 conv (ResNet "v1.5")."""
  filters: int
  strides: int = 1
  norm: Callable = nn.BatchNorm
  expansion: int = 4

  @nn.compact
  def __call__(self, x):
    s = (self.strides, self.strides)
    y = nn.relu(self.norm()(nn.Conv(self.filters, (1, 1), use_bias=False)(x)))
    y = nn.Conv(self.filters, (3, 3), s, padding=[(1, 1), (1, 1)], use_bias=False)(y)
    y = nn.relu(self.norm()(y))
    y = nn.Conv(self.filters * self.expansion, (1, 1), use_bias=False)(y)
    y = self.norm(scale_init=nn.initializers.ones)(y)
    if x.shape != y.shape:
      x = nn.Conv(self.filters * self.expansion, (1, 1), s, use_bias=False)(x)
      x = self.norm()(x)
    return nn.relu(x + y)


STEMS = ("cifar", "imagenet")
BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}


class ResNet(nn.Module):
  """ResNet. ResNet-18: stage_sizes (2, 2, 2, 2), basic blocks; ResNet-50: (3, 4, 6, 3),
  bottleneck blocks. stem 'cifar': 3x3 stride-1 conv (32x32 inputs keep their resolution);
  'imagenet': 7x7 stride-2 conv + 3x3 stride-2 max-pool (224x224 -> 56x56 before stage 1)."""
  num_classes: int = 10
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  bn_momentum: float = 0.9
  bn_axis_name: Optional[str] = None  # set by the trainer for cross-device BN
  stem: str = "cifar"
  block: str = "basic"

  @nn.compact
  def __call__(self, x, train: bool = False, return_embedding: bool = False):
    if self.stem not in STEMS:
      raise ValueError(f"resnet: unknown stem {self.stem!r}; choose from {STEMS}")
    if self.block not in BLOCKS:
      raise ValueError(f"resnet: unknown block {self.block!r}; choose from {tuple(BLOCKS)}")
    norm = lambda **kw: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                     epsilon=1e-5, axis_name=self.bn_axis_name if train else None,
                                     **kw)
    if self.stem == "cifar":
      h = nn.Conv(self.width, (3, 3), padding=[(1, 1), (1, 1)], use_bias=False)(x)
      h = nn.relu(norm()(h))
    else:
      h = nn.Conv(self.width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False)(x)
      h = nn.relu(norm()(h))
      h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
    block = BLOCKS[self.block]
    for i, n_blocks in enumerate(self.stage_sizes):
      for j in range(n_blocks):
        h = block(self.width * 2 ** i, strides=2 if (i > 0 and j == 0) else 1, norm=norm)(h)
    h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
    logits = nn.Dense(self.num_classes)(h)
    return _out(logits, h, return_embedding)


class ConvNet(nn.Module):
  """KIP / dataset-condensation ConvNet for 2-D images or 1-D sequences."""
  num_classes: int = 10
  width: int = 128
  depth: int = 3
  norm: str = "none"  # 'none' | 'instance' | 'layer'

  @nn.compact
  def __call__(self, x, train: bool = False, return_embedding: bool = False):
    if self.norm not in ("none", "instance", "layer"):
      raise ValueError(f"convnet: unknown norm {self.norm!r}; choose none/instance/layer")
    h = x
    nd = h.ndim - 2  # spatial dims
    for _ in range(self.depth):
      h = nn.Conv(self.width, (3,) * nd, padding="SAME")(h)
      if self.norm == "instance":
        h = nn.GroupNorm(num_groups=None, group_size=1)(h)
      elif self.norm == "layer":
        h = nn.LayerNorm(reduction_axes=tuple(range(1, h.ndim)))(h)
      h = nn.relu(h)
      if min(h.shape[1:-1]) >= 2:
        h = nn.avg_pool(h, (2,) * nd, strides=(2,) * nd)
    h = h.reshape((h.shape[0], -1))
    logits = nn.Dense(self.num_classes)(h)
    return _out(logits, h, return_embedding)


MODELS = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "cnn1d": CNN1D,
    "resnet18": lambda **kw: ResNet(stage_sizes=(2, 2, 2, 2), **kw),
    "resnet50": lambda **kw: ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kw),
    "resnet": ResNet,
    "convnet": ConvNet,
    "convnet1d": ConvNet,
}


def create_model(model_config: Any, **overrides) -> nn.Module:
  """Builds a model from a ConfigDict/dict ``{name: ..., **kwargs}``.

  ``overrides`` fill in keyword arguments not given in the config
  (e.g. ``num_classes`` from the dataset).
  """
  cfg = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
  name = cfg.pop("name", None)
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
  for k, v in overrides.items():
    if cfg.get(k) is None:
      cfg[k] = v
  cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if v is not None}
  try:
    return MODELS[name](**cfg)
  except TypeError as e:
    raise ValueError(f"model {name!r}: bad arguments {sorted(cfg)}: {e}") from None
