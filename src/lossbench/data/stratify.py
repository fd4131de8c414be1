"""Multi-label sets carved stratified: iterative stratification (Sechidis, Tsoumakas & Vlahavas
2011, *On the Stratification of Multi-Label Data*, ECML PKDD, Algorithm 1).

A multi-label set has no single class to stratify by, and the label sets themselves are too
many and too rare. The algorithm keeps each label's share in every subset instead:

- subset j wants ``c_j = |D| r_j`` samples, and ``c_j^i = |D^i| r_j`` of the samples of label
  i (``D^i``, ``r_j`` its share);
- repeatedly take the label with the fewest samples left (ties at random) and give each of its
  samples to the subset that wants that label most (ties: the subset that wants the most
  samples, then at random), lowering that subset's wants for every label of the sample;
- samples without any label go to the subsets that want the most samples.

Rare labels go first, so they are spread before the common ones fill the subsets. One change
makes the sizes exact (lossbench's ``val_size``/``test_size`` are counts): a subset whose
``c_j`` is spent takes no more samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iterative(labels: np.ndarray, sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of exactly ``sizes`` (summing to ``len(labels)``) from the 0/1 rows
    ``labels`` (n, C), each subset holding about its share of every label; fixed by ``seed``."""
    y = np.asarray(labels) > 0.5
    n = len(y)
    if sum(sizes) != n:
        raise ValueError(f"the sizes {list(sizes)} do not add up to the {n} samples")
    rng = np.random.default_rng(seed)
    share = np.asarray(sizes, dtype=float) / n
    capacity = np.asarray(sizes, dtype=np.int64)  # c_j
    wanted = np.outer(share, y.sum(0))  # c_j^i
    left = y.sum(0)  # samples of each label not yet given
    free = np.ones(n, dtype=bool)
    order = rng.permutation(n)  # the order samples are taken in: ties between them at random
    subset = np.full(n, -1)
    while free.any():
        if left.any():
            fewest = np.flatnonzero(left == left[left > 0].min())
            label = rng.choice(fewest)
            taken, want = order[free[order] & y[order, label]], wanted[:, label]
        else:  # the samples without any label
            taken, want = order[free[order]], capacity
        for i in taken:
            open_ = np.flatnonzero(capacity > 0)
            best = open_[want[open_] == want[open_].max()]
            if len(best) > 1:
                best = best[capacity[best] == capacity[best].max()]
            j = best[0] if len(best) == 1 else rng.choice(best)
            subset[i], free[i] = j, False
            capacity[j] -= 1
            wanted[j, y[i]] -= 1
            left[y[i]] -= 1
    return [order[subset[order] == j] for j in range(len(sizes))]
