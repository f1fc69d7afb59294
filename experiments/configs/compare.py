"""Pruning vs distillation on sklearn digits: the README's main job.

    python scripts/compare.py --config=experiments/configs/compare.py --workdir=runs/compare
    python scripts/compare.py --config=experiments/configs/compare.py:quick --workdir=/tmp/cmp
    python scripts/compare.py --config=experiments/configs/compare.py:distill_full --workdir=DIR

Budgets: 1, 5, 10, 50 examples per class (exactly k of every class; pruning
keeps the k hardest/easiest of each class, KIP / Label Solve distil k images
per class) and 25%, 50%, 100% of the 1,437 training images (pruning only).
Every set is evaluated by training the same MLP (256-256) with the shared trainer
(fixed number of steps, the Data Diet convention) and by kernel ridge
regression with the FC ReLU NTK of the KIP notebook (one hidden layer).
Report sections: the scaling experiment's :quick grid (MNIST-1D pools) and the
distillation controls (experiments/distill_controls.py): DSA and DM beside KIP,
Label Solve, random real images and the best pruning rule at 1, 10, 50 per class
(seeds 0, 1; DSA not at 50) under hard / own / teacher labels x DSA augmentation
at evaluation, with the cost of each set. `:distill_full` adds DD, DC, DSA at 50
per class and KIP with the ConvNet NTK (not at 50 per class: out of memory here).

Why digits and not MNIST-1D by default: the whole job fits in well under 30
minutes on 2 CPU cores, and the FC NTK is a strong kernel on digits (~99% by
kernel regression with the full set), so the distillation side is meaningful.
MNIST-1D: compare_mnist1d.py (its :distill arg is the controls grid there).

Measured (2026-12-02, JAX 0.10.2, 2 CPU cores, fresh folder): 8.6 min on a quiet
machine (21.8 at load 6-8). Finite network, 3 seeds: KIP 89.4% with 10 images
(1/class), random 54.4, EL2N keep-easy 79.4, keep-hard 21.9; at 50% kept EL2N
keep-hard 98.0 vs random 97.1. Controls, teacher labels + augmentation at 1 / 10
per class: random 80.8 / 94.9, KIP 92.9 / 96.9, DM 83.8 / 96.3, DSA 82.6 / 94.2,
best pruning rule 89.6 / 94.3 (DSA and DM at 1 per class move by several points
with the CPU's instruction set: README). `:quick` runs 2 budgets x 1 seed with short training in a few minutes.
"""
import ml_collections

from core.configs import digits_cnn, digits_mlp
from core.config import check_arg, fixed_steps


def comparison_config(*, dataset: dict, train, score_train,
                      kernel: dict) -> ml_collections.ConfigDict:
  """The fields every comparison has; dataset-specific configs fill the arguments.

  train: trainer config of the one evaluation network every kept and every distilled set
  trains (support sets with MSE on their soft labels, see
  distill.evaluate.finite_network_eval); score_train: trainer config of the scoring runs; kernel: the
  neural-tangents kernel of KIP, Label Solve and kernel regression.
  """
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.per_class_budgets = (1, 5, 10, 50)
  c.fractions = (0.25, 0.5, 1.0)
  c.seeds = (0, 1, 2)
  c.pruning_methods = ("random", "el2n", "grand", "forgetting", "prototype")
  c.modes = ("hard", "easy")
  c.distill_methods = ("kip", "label_solve")
  c.ccs_beta = 0.1
  c.progress_bar = True
  c.notes = ""
  c.train = train
  c.score_train = score_train
  c.scores = dict(el2n=dict(epoch=3, num_runs=4), grand=dict(epoch=0, num_runs=4, chunk_size=64),
                  forgetting=dict(num_runs=1),
                  prototype=dict(embedding="pca", dim=32, k=10, centroids="kmeans",
                                 normalize=True, n_init=3),
                  seed=0)
  # Distillation (distill/configs/*.py format): kernel, KIP, Label Solve, and the
  # finite network trained on the support set - the same network and number of
  # steps as `train`, MSE on the learned soft labels, centred at init.
  c.distill = dict(
      kernel=kernel,
      kip=dict(steps=400, lr=0.01, reg=1e-6, learn_labels=False, target_per_class=50,
               log_every=50, eval_every=0, checkpoint_every=100, kernel_batch_size=256),
      label_solve=dict(target_per_class=0),
      finite=dict(center_at_init=True))
  # Theory panel: replica curves at theta = 0.
  c.theory = dict(alpha_range=(0.3, 10.0), num_alpha=30, fractions=(1.0, 0.5, 0.2))
  # The scaling experiment (experiments/scaling.py) on a small MNIST-1D grid, as a report
  # section: test error vs examples kept across pool sizes, beside the theory.
  c.scaling = ml_collections.ConfigDict(dict(enabled=False, config=ml_collections.ConfigDict()))
  # Distilled sets beside random real images and the best pruning rule under evaluation
  # controls (experiments/distill_controls.py; a distill/configs/*_matching.py config; its
  # finite_train is replaced by `train`, the one evaluation network), as a report section.
  c.distill_controls = ml_collections.ConfigDict(dict(enabled=False, best_pruning=True,
                                                      config=ml_collections.ConfigDict()))
  return c


def main_job_controls(c, matching, methods, seeds, skip=()) -> ml_collections.ConfigDict:
  """The controls section of a comparison: `matching` (a *_matching.py config) restricted to
  `methods` / `seeds`. Its kip_fc / label_solve sections are replaced at run time by the
  comparison's own `distill` settings (experiments.compare.controls_sections), so the section's
  KIP is the KIP of the tables above."""
  matching.methods = tuple(methods)
  matching.seeds = tuple(seeds)
  matching.skip = tuple(skip)
  matching.per_ipc = {k: {m: v for m, v in d.items() if m in methods}
                      for k, d in matching.per_ipc.to_dict().items()}
  matching.figure = dict(images_per_class=10, seed=0)
  return ml_collections.ConfigDict(dict(enabled=True, best_pruning=True, config=matching))


def shrink_for_quick(c) -> None:
  c.per_class_budgets = (5, 20)
  c.fractions = (0.5,)
  c.seeds = (0,)
  c.train.num_steps = 120
  c.score_train.num_epochs = 3
  c.scores.el2n = dict(epoch=2, num_runs=2)
  c.scores.grand = dict(epoch=0, num_runs=2, chunk_size=64)
  c.distill.kip.steps = 40
  c.theory.num_alpha = 12
  c.scaling.enabled = False
  c.pruning_methods = tuple(m for m in c.pruning_methods if m != "ssl_prototype")
  if c.distill_controls.enabled:  # a few iterations of each method: the section's plumbing
    cc = c.distill_controls.config
    cc.images_per_class = (5,)
    cc.seeds = (0,)
    cc.evaluation.label_modes = ("hard", "own", "teacher")
    cc.finite_train_teacher.num_steps = 100
    cc.figure = dict(images_per_class=5, seed=0)
    for m, iters in (("dd", 2), ("dc", 2), ("dsa", 2), ("dm", 10)):
      if m in cc:
        cc[m].iterations = iters
    for m in ("dc", "dsa"):
      if m in cc:
        cc[m].outer_loop, cc[m].inner_loop = 2, 2
    cc.per_ipc = {}


def get_config(arg=None):
  arg = check_arg(arg, "quick", "distill_full")
  score_train = digits_cnn.get_config()
  score_train.num_epochs = 10
  score_train.progress_bar = False
  score_train.checkpoint = False
  c = comparison_config(
      dataset=dict(name="digits", normalization="standardize"),
      train=fixed_steps(digits_mlp.get_config(), 400),
      score_train=score_train,
      kernel=dict(architecture="fc", depth=1, kernel_type="ntk"))
  from experiments.configs import scaling_mnist1d
  from pruning.configs import digits_ssl
  c.scaling = ml_collections.ConfigDict(dict(enabled=True,
                                             config=scaling_mnist1d.get_config("quick")))
  # The paper's own metric: k-means prototypes in the embedding of a self-supervised encoder
  # (SimCLR on the training inputs, labels never read), trained once and cached.
  encoder = digits_ssl.get_config()
  encoder.num_steps = 300
  c.pruning_methods = tuple(c.pruning_methods) + ("ssl_prototype",)
  c.scores.ssl_prototype = ml_collections.ConfigDict(dict(
      encoder=encoder, k=10, centroids="kmeans", n_init=3, baselines=()))
  # DSA and DM (CPU-scaled: distill/configs/digits_matching.py) beside KIP, Label Solve, random
  # real images and the best pruning rule at 1, 10, 50 per class, seeds 0 and 1, under the
  # label x augmentation controls. DSA at 50 per class and DD / DC / KIP-ConvNet: :distill_full.
  from distill.configs import digits_matching
  full = arg == "distill_full"
  methods = (("random", "label_solve", "kip_fc", "kip_conv", "dd", "dc", "dsa", "dm") if full
             else ("random", "label_solve", "kip_fc", "dsa", "dm"))
  matching = digits_matching.get_config()
  if full:  # every method at 1, 10, 50 per class, 2 seeds; the 50-per-class runs CPU-scaled
    matching.per_ipc["50"] = dict(
        matching.per_ipc["50"].to_dict(),
        dc=dict(iterations=10, outer_loop=10, inner_loop=10),
        dsa=dict(iterations=10, outer_loop=10, inner_loop=10), dd=dict(iterations=25))
  # KIP with the ConvNet NTK at 50 per class does not fit this machine: one float64 KIP step on
  # 500 support + 100 target images asked XLA for 73,943,554,256 bytes (measured 2026-12-02).
  c.distill_controls = main_job_controls(c, matching, methods, seeds=(0, 1),
                                         skip=(("kip_conv", 50),) if full else (("dsa", 50),))
  if arg == "quick":
    shrink_for_quick(c)
  return c
