"""ImageNet (ILSVRC-2012) ResNet-50 (or ResNet-18) at 224x224, streamed from record files.

NOT RUN HERE (no ImageNet, no accelerator in this environment): the config validates, and
its model builds and takes training steps on a SYNTHETIC ImageNet-shaped record set in
tests/test_imagenet_config.py. Prepare the data once (docs/streaming.md), then

    python scripts/train.py --config=core/configs/imagenet_resnet50.py \
        --workdir=$WORKDIR --config.dataset.data_dir=$DATA/imagenet2012_224

Where each setting comes from:
  * Model: ResNet-50 v1.5 (bottleneck, stride in the 3x3 conv; 25,557,032 parameters, as
    torchvision's) with the ImageNet stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool; He et al.
    2016). Sorscher et al. 2022 ("Beyond neural scaling laws") prune ImageNet and train
    ResNet-50 on the kept subsets; Data Diet (Paul et al. 2021) has no ImageNet experiment
    (CIFAR-10/100, CINIC-10 only). The training hyperparameters of Sorscher et al. could not
    be retrieved here (only the abstract was reachable), so the recipe below is the standard
    one, not theirs.
  * Optimiser, the standard ImageNet recipe (Goyal et al. 2017 "Accurate, Large Minibatch
    SGD"; the Flax ImageNet example, google/flax examples/imagenet): SGD momentum 0.9
    (not Nesterov), lr 0.1 x batch / 256 (batch 1024 -> 0.4), 5 warm-up epochs, weight decay
    1e-4 (coupled L2, as PyTorch SGD), 90 epochs (Goyal et al.; the Flax example runs 100),
    cosine decay (the Flax example; Goyal et al. step x0.1 at epochs 30/60/80:
    --config.optimizer.schedule=step --config.optimizer.boundaries="(0.333,0.667,0.889)"
    --config.optimizer.decay_factor=0.1).
  * Not available in this codebase, so different from the standard recipe: no label
    smoothing (the Flax example and big_vision's ResNet configs use 0.1 in some variants;
    Goyal et al. use none); no zero-init of the last BN scale in each block (Goyal et al. do);
    augmentation is random crop with zero padding + horizontal flip (core.augment) on images
    resized to 224x224 once when the record set is written (prepare_tfds(image_size=224),
    which distorts the aspect ratio), instead of random-resized-crop (scale 0.08-1, aspect
    3/4-4/3) + flip for training and resize-256 / centre-crop-224 for evaluation.
  * Data: dict(name="imagenet2012", source="records", data_dir=..., normalization=
    "per_channel"): per-channel mean/std of the training split stored in the record set,
    as the in-memory path computes them.
  * Scoring (pruning.scores): EL2N at epoch 10 averaged over 10 runs is the default of
    `pruning.scores.default_config()` (Data Diet on CIFAR: epoch 20 of 200, 10 runs);
    Sorscher et al. score ImageNet with networks trained on it.

Args (--config=core/configs/imagenet_resnet50.py:ARG):
  * "resnet18": ResNet-18 with the ImageNet stem (11,689,512 parameters, as torchvision's),
    batch 256, lr 0.1;
  * "quick" / "resnet18,quick": 2 steps, batch 8, no checkpoints: checks the pipeline only.
"""
from core.config import base_config, check_arg

IMAGENET_TRAIN_SIZE = 1281167


def get_config(arg=None):
  arg = check_arg(arg, "quick", "resnet18", "resnet18,quick")
  parts = set((arg or "").split(","))
  c = base_config()
  c.dataset = dict(name="imagenet2012", source="records", data_dir=None,
                   normalization="per_channel")
  if "resnet18" in parts:
    c.model = dict(name="resnet18", stem="imagenet", num_classes=1000)
    c.batch_size = 256
  else:
    c.model = dict(name="resnet50", stem="imagenet", num_classes=1000)
    c.batch_size = 1024
  c.num_epochs = 90
  c.optimizer.update(name="sgd", lr=0.1 * c.batch_size / 256, momentum=0.9, nesterov=False,
                     weight_decay=1e-4, schedule="cosine", warmup_epochs=5.0)
  c.augment.update(crop_padding=16, flip=True)
  c.eval_batch_size = 1000
  steps_per_epoch = IMAGENET_TRAIN_SIZE // c.batch_size
  c.log_every_steps = 100
  c.eval_every_steps = 10 * steps_per_epoch
  c.checkpoint_every_steps = steps_per_epoch
  if "quick" in parts:
    c.num_epochs = None
    c.num_steps = 2
    c.batch_size = 8
    c.optimizer.lr = 0.1 * c.batch_size / 256
    c.optimizer.warmup_epochs = 0.0
    c.eval_batch_size = 8
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 0
  return c
