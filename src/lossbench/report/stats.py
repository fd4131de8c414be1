"""The statistics of the report: plain functions of per-seed numbers (scipy), no store.

Each pair is compared with a reference pair (the best by mean test accuracy), per metric:

* **Paired** when both ran the same seeds (a seed gives every pair the same initial weights and
  data order): per seed the difference d_s = x_pair − x_ref; its mean, the 95% confidence
  interval ``mean ± t_{0.975, n−1} · sd / √n``, a two-sided paired t-test (``ttest_rel``) and,
  with at least 6 seeds, Wilcoxon's signed-rank test (``wilcoxon``) beside it. Otherwise
  **unpaired**: Welch's t-test (``ttest_ind(equal_var=False)``) and its Welch–Satterthwaite CI.
* **Resampled splits** (each seed carved its own val/test split, ``dataset.split_seed='${seed}'``,
  as Bouthillier et al. 2021 recommend, so that the verdict covers the choice of test set too):
  the seeds' training sets overlap, so their differences are not independent and sd²/n
  understates the variance of their mean (Dietterich 1998). Nadeau & Bengio's (2003, Machine
  Learning 52:239–281) corrected resampled t-test replaces it by ``(1/n + n_test/n_train) · sd²``,
  with n − 1 degrees of freedom; the interval, TOST and seeds needed use the same variance, and
  Welch's test (seeds that differ) inflates each mean's variance alike (lossbench's extension).
  Its floor ``n_test/n_train · sd²`` does not shrink with seeds: every split is drawn from the
  same samples, so a difference below it needs more data, not more seeds.
* **Holm–Bonferroni** (Holm 1979) over the pairs compared with the reference, per metric:
  the i-th smallest of m p-values becomes ``max_{j ≤ i} min(1, (m − j + 1) p_(j))``.
* **Equivalence within ±δ**: two one-sided tests (Schuirmann 1987) on the same differences,
  ``p_tost = max(P(T > (d̄ + δ)/se), P(T < (d̄ − δ)/se))``, Holm-adjusted alike.
* **Verdict**: ``worse by X ± Y`` / ``better by X ± Y`` (X the mean difference, Y the CI's half
  width) when the adjusted difference test rejects at α; else ``equivalent within ±δ`` when the
  adjusted TOST rejects; else ``undecided: about n seeds needed``, n from the observed spread
  (normal approximation, power 0.8, α/m): to detect the observed difference,
  ``((z_{1−α/(2m)} + z_{0.8}) · sd / |d̄|)²``, or, when |d̄| < δ, to show equivalence,
  ``((z_{1−α/m} + z_{0.8}) · sd / (δ − |d̄|))²``, whichever is smaller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
WILCOXON_MIN_SEEDS = 6


@dataclass
class Comparison:
    """One pair against the reference on one metric (differences are pair − reference)."""

    pair: str
    reference: str
    metric: str
    n: int
    test: str  # "paired t" or "Welch"
    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_wilcoxon: float
    p_tost: float
    margin: float
    higher_is_better: bool
    p_holm: float = float("nan")
    p_tost_holm: float = float("nan")
    sd: float = float("nan")
    test_share: float = 0.0  # n_test / n_train where the splits were resampled per seed

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def verdict(self, m: int, alpha: float = ALPHA) -> str:
        """The verdict, ``m`` the number of pairs compared on this metric."""
        if self.p_holm < alpha:
            good = (self.diff > 0) == self.higher_is_better
            return (
                f"{'better' if good else 'worse'} by {abs(self.diff):.4g} ± {self.half_width:.2g}"
            )
        if self.p_tost_holm < alpha:
            return f"equivalent within ±{self.margin:g}"
        needed = seeds_needed(self.diff, self.sd, self.margin, m, self.n, alpha, self.test_share)
        if needed == NEVER:
            return "undecided: more seeds alone cannot settle it, more data would"
        if needed:
            return f"undecided: about {needed} seeds needed"
        return "undecided: one seed a side, no spread yet: run more seeds" if self.n < 2 else (
            "undecided: no spread yet")  # fmt: skip


def paired(
    name: str,
    reference: str,
    metric: str,
    x: Mapping[int, float],
    ref: Mapping[int, float],
    margin: float,
    higher_is_better: bool = True,
    test_share: float = 0.0,
) -> Comparison:
    """Compare ``x`` with ``ref`` (seed → value): paired on their common seeds when they ran the
    same seeds (at least 2), else unpaired (Welch). ``test_share`` > 0: each seed had its own
    split, of n_test / n_train = ``test_share``; the variances are Nadeau & Bengio's corrected
    ones (module docstring)."""
    common = sorted(set(x) & set(ref))
    rho = test_share
    if len(common) >= 2 and set(x) == set(ref):
        d = np.array([x[s] - ref[s] for s in common])
        n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
        se = sd * math.sqrt(1 / n + rho)
        df = n - 1
        if se == 0:
            p = 1.0 if mean == 0 else 0.0
        elif rho:
            p = float(2 * stats.t.sf(abs(mean) / se, df))
        else:
            p = float(stats.ttest_rel([x[s] for s in common], [ref[s] for s in common]).pvalue)
        p_w = float("nan")
        if n >= WILCOXON_MIN_SEEDS and not rho:  # it too assumes independent differences
            p_w = 1.0 if not d.any() else float(stats.wilcoxon(d).pvalue)
        test = "corrected t" if rho else "paired t"
    else:
        a, b = np.array(list(x.values())), np.array(list(ref.values()))
        n, mean = min(len(a), len(b)), float(a.mean() - b.mean())
        if n < 2:  # a single value a side: no spread, so no test and no interval
            se = df = p = float("nan")
        else:
            va, vb = (v.var(ddof=1) * (1 / len(v) + rho) for v in (a, b))
            se = float(math.sqrt(va + vb))
            df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se else 1.0
            if not se:
                p = float(mean == 0)
            elif rho:
                p = float(2 * stats.t.sf(abs(mean) / se, df))
            else:
                p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        sd, p_w = se / math.sqrt(1 / n + rho), float("nan")
        test = "Welch, corrected" if rho else "Welch"
    half = float(stats.t.ppf(0.975, df) * se) if se > 0 else 0.0 if se == 0 else float("nan")
    return Comparison(
        pair=name, reference=reference, metric=metric, n=n, test=test, diff=mean,
        ci_low=mean - half, ci_high=mean + half, p=p, p_wilcoxon=p_w,
        p_tost=tost(mean, se, df, margin), margin=margin, higher_is_better=higher_is_better,
        sd=sd, test_share=rho,
    )  # fmt: skip


def tost(mean: float, se: float, df: float, margin: float) -> float:
    """p of the two one-sided tests that the true difference lies within ±margin."""
    if math.isnan(se):  # a single value a side
        return float("nan")
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = stats.t.sf((mean + margin) / se, df)  # H0: diff <= -margin
    upper = stats.t.cdf((mean - margin) / se, df)  # H0: diff >= +margin
    return float(max(lower, upper))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (NaNs stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def adjust(comparisons: list[Comparison]) -> None:
    """Holm-adjust the difference and equivalence p-values of one metric's comparisons."""
    for c, p in zip(comparisons, holm([c.p for c in comparisons]), strict=True):
        c.p_holm = p
    for c, p in zip(comparisons, holm([c.p_tost for c in comparisons]), strict=True):
        c.p_tost_holm = p


NEVER = -1  # seeds_needed: no number of seeds would (splits resampled from too little data)


def seeds_needed(
    diff: float,
    sd: float,
    margin: float,
    m: int,
    n: int = 2,
    alpha: float = ALPHA,
    test_share: float = 0.0,
) -> int | None:
    """About how many seeds would settle a comparison now at ``n`` seeds, from the observed spread
    ``sd`` of the per-seed differences: the smallest k > n with
    ``|d̄| >= (t_{1−α/(2m), k−1} + t_{power, k−1}) · sd · √(1/k + ρ)`` (to detect the observed
    difference), or, when |d̄| < δ, with ``(δ − |d̄|)`` and ``t_{1−α/m}`` (to show equivalence),
    whichever comes first; ρ = ``test_share`` (0 for one fixed test split). :data:`NEVER` when
    even unlimited seeds would not (ρ > 0: the variance's floor ρ · sd²); None when there is no
    spread to go by."""
    if math.isnan(sd) or sd == 0:
        return None
    targets = []
    if diff:
        targets.append((abs(diff), 1 - alpha / (2 * m)))
    if abs(diff) < margin:
        targets.append((margin - abs(diff), 1 - alpha / m))
    rho = test_share
    # the limit k → ∞ (normal quantiles): below the floor, no k will do
    targets = [
        (effect, level)
        for effect, level in targets
        if effect > (stats.norm.ppf(level) + stats.norm.ppf(POWER)) * sd * math.sqrt(rho)
    ]
    if not targets:
        return NEVER
    start = max(n + 1, 3)
    for k in (np.arange(start, 1_000), np.arange(max(start, 1_000), 100_000)):  # most need few
        first = [k[enough].min() for effect, level in targets
                 if (enough := effect >= (stats.t.ppf(level, k - 1) + stats.t.ppf(POWER, k - 1))
                     * sd * np.sqrt(1 / k + rho)).any()]  # fmt: skip
        if first:
            return int(min(first))
    return NEVER if rho else None
