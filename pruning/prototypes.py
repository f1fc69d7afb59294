"""Prototype scores (Sorscher et al. 2022): distance to the nearest centroid of an embedding.

Pure functions on arrays (scikit-learn k-means, k-means++): the ``prototype`` score method
(`pruning.scores`) and the ``ssl_prototype`` one (`pruning.ssl`) use them.
Shapes: embeddings (n, d) (or (n, ...) flattened), labels (n,), scores (n,).
"""
from __future__ import annotations

import numpy as np


def prototype_scores(embeddings, labels=None, *, k: int = 10, centroids: str = "kmeans",
                     normalize: bool = True, seed: int = 0, n_init: int = 3) -> np.ndarray:
  """Distance of each embedding to its nearest centroid, large = hard (atypical).

  ``centroids``: ``kmeans`` (k clusters over all examples, label-free), ``kmeans_per_class``
  (k within each class) or ``class_mean`` (one centroid per class, its mean embedding);
  ``normalize`` L2-normalises the embeddings first.
  """
  from sklearn.cluster import KMeans
  e = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
  if normalize:
    e = e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-12)
  if centroids == "kmeans":
    km = KMeans(n_clusters=min(int(k), len(e)), init="k-means++", n_init=n_init,
                random_state=seed).fit(e)
    return np.min(km.transform(e), axis=1)
  if labels is None:
    raise ValueError(f"prototype centroids={centroids!r} needs labels")
  labels = np.asarray(labels)
  out = np.empty(len(e))
  for c in np.unique(labels):
    m = labels == c
    if centroids == "class_mean":
      out[m] = np.linalg.norm(e[m] - e[m].mean(axis=0), axis=1)
    elif centroids == "kmeans_per_class":
      km = KMeans(n_clusters=min(int(k), int(m.sum())), init="k-means++", n_init=n_init,
                  random_state=seed).fit(e[m])
      out[m] = np.min(km.transform(e[m]), axis=1)
    else:
      raise ValueError(f"unknown prototype centroids {centroids!r}; choose kmeans, "
                       f"kmeans_per_class or class_mean")
  return out


def pca_embedding(x, dim: int, seed: int = 0) -> np.ndarray:
  """(n, min(dim, d, n)) PCA of the flattened inputs (label-free, no network)."""
  from sklearn.decomposition import PCA
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  dim = min(int(dim), x.shape[1], len(x))
  return PCA(n_components=dim, random_state=seed).fit_transform(x)
