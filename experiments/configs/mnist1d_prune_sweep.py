"""Pruning sweep on MNIST-1D (16,000 train / 4,000 test) with the authors' 1-D CNN.

    python scripts/prune_sweep.py --config=experiments/configs/mnist1d_prune_sweep.py \
        --workdir=/tmp/prune_sweep_mnist1d

For each method (EL2N keep-hard / keep-easy / CCS, GraNd, forgetting, k-means
prototypes on PCA embeddings, random), each keep fraction in
(1.0, 0.5, 0.3, 0.2, 0.1) and 3 seeds, trains the CNN for a fixed 1,000 steps of
Adam (batch 128, cosine; the Data Diet budget convention: the same number of
steps on every subset), class-balanced selection, and records test accuracy.
Scores: EL2N and GraNd after 2 of the 8 epochs of a full-data run, 4 runs each;
forgetting from one full run (per-minibatch correctness); GraNd at init and the
input norm only for rank correlations.

Expected (JAX 0.10.2: 88 s on 2 quiet CPU cores; JAX 0.5.3: 4.5 min idle, ~15 min when heavily
loaded; docs/prune_sweep_mnist1d.png):
  full data 0.953 +- 0.002; at f=0.5: EL2N 0.952 +- 0.004, GraNd 0.951 +- 0.010 (within
  noise of full data), forgetting 0.945, random 0.941 +- 0.002, CCS 0.930, prototype/PCA
  0.918, EL2N keep-easy 0.837. At f <= 0.2 random and CCS beat every keep-hard rule (f=0.1:
  CCS 0.766, random 0.746, EL2N keep-easy 0.605 > EL2N keep-hard 0.573). Spearman(GraNd at
  init, input norm) = +0.92.
With --config.class_balanced=False (Data Diet's global ranking) keep-hard
selection is strongly class-imbalanced and EL2N keep-hard drops below random
already at f=0.5 (0.923 vs 0.938).
Rerunning with the same --workdir skips finished cells.

`:quick` is a ~1 minute smoke test (1,000 / 500 examples, 2 methods).
"""
import ml_collections

from pruning import scores
from core.configs import mnist1d_cnn
from core.config import check_arg


def get_config(arg=None):
  arg = check_arg(arg, "quick")
  c = ml_collections.ConfigDict()
  t = mnist1d_cnn.get_config()
  t.dataset = dict(name="mnist1d", normalization="standardize", num_train=16000, num_test=4000)
  t.batch_size = 128
  t.num_steps = 1000
  t.eval_batch_size = 2000
  t.log_every_steps = 250
  t.checkpoint = False
  t.progress_bar = False
  c.train = t
  # "steps": every subset trains train.num_steps steps (Data Diet);
  # "epochs": num_epochs passes over the subset.
  c.budget = "steps"
  c.num_epochs = ml_collections.config_dict.placeholder(float)
  c.methods = ("random", "el2n", "el2n:easy", "el2n:ccs", "grand", "forgetting", "prototype")
  c.fractions = (1.0, 0.5, 0.3, 0.2, 0.1)
  c.seeds = (0, 1, 2)
  # Per-class selection: on MNIST-1D the EL2N/GraNd difficulty differs so much
  # between classes that global keep-hard / keep-easy at f=0.3 drop whole
  # classes (keep-easy keeps 0 examples of classes 4 and 9). False = Data Diet's
  # global ranking.
  c.class_balanced = True
  c.ccs_beta = 0.1
  c.ccs_strata = 50
  # Extra scores computed only for Spearman rank correlations (grand@0 = GraNd at init).
  c.correlate_with = ("input_norm", "grand@0")
  s = scores.default_config()
  s.train = None  # = c.train (8 epochs of 125 steps on the full 16,000)
  s.el2n.update(epoch=2, num_runs=4)
  s.grand.update(epoch=2, num_runs=4, chunk_size=256)
  s.forgetting.update(num_runs=1)
  s.prototype.update(embedding="pca", dim=20, k=10, centroids="kmeans")
  c.scores = s
  if arg == "quick":
    t.dataset = dict(name="mnist1d", normalization="standardize", num_train=1000, num_test=500)
    t.num_steps = 60
    t.batch_size = 50
    c.methods = ("random", "el2n")
    c.fractions = (1.0, 0.5)
    c.seeds = (0,)
    c.correlate_with = ()
    s.el2n.update(epoch=1, num_runs=1)
  return c
