"""The report's verdicts: every pair against the best on each metric
(:mod:`lossbench.report.stats`), the A/A check of pairs that compute the same function, the
published directions checked, and the paragraph a user can act on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lossbench.report import stats
from lossbench.report.pairs import ACC, Pair, ranked

HIGHER = ("test/acc", "test/f1_macro", "test/hamming_acc", "test/f1_micro", "test/map",
          "test/lrap", "test/f1_samples", "test/auroc", "test/ap")  # fmt: skip
LOWER = ("test/nll", "test/brier", "test/ece", "test/nll_ts", "test/ece_ts", "test/ranking_loss",
         "test/one_error")  # fmt: skip
MULTILABEL_ONLY = ("test/hamming_acc", "test/map", "test/lrap", "test/f1_samples",
                   "test/ranking_loss", "test/one_error")  # fmt: skip
TWO_CLASS_ONLY = ("test/auroc", "test/ap")
VERDICT_METRICS = {
    "multiclass": ("test/acc", "test/f1_macro", "test/nll", "test/brier", "test/ece",
                   "test/ece_ts", "test/auroc", "test/ap"),  # AUROC, AP: two-class sets
    "multilabel": ("test/acc", "test/hamming_acc", "test/f1_micro", "test/map", "test/lrap",
                   "test/nll", "test/brier", "test/ece"),
}  # fmt: skip
NLL_MARGIN = 0.01  # nats: the equivalence margin of the NLL scores
NAMES = {"test/acc": "test accuracy", "test/f1_macro": "test macro-F1", "test/map": "test mAP",
         "test/f1_micro": "test micro-F1", "test/hamming_acc": "test Hamming accuracy",
         "test/lrap": "test LRAP", "test/f1_samples": "test sample-F1", "test/nll": "test NLL",
         "test/brier": "test Brier score", "test/ece": "test ECE",
         "test/nll_ts": "test NLL after TS", "test/ece_ts": "test ECE after TS",
         "test/ranking_loss": "test ranking loss", "test/one_error": "test one-error",
         "test/auroc": "test AUROC", "test/ap": "test average precision"}  # fmt: skip


def by_metric(pairs: list[Pair], metric: str) -> list[Pair]:
    """The pairs best first by the mean of ``metric`` (a loss-like score: lowest first)."""
    return ranked(pairs, metric, metric not in LOWER)


def margin_text(metric: str, points: float) -> str:
    if "nll" in metric:
        return f"±{NLL_MARGIN} nats"
    return f"±{points:g} {'accuracy ' if metric == ACC else ''}points"


# Pairs that compute the same function (the built-in A/A check)
SAME_FUNCTION = (("softmax", ("ce", "nll", "ce_onehot")),
                 ("sigmoid", ("bce", "bce_logits", "multilabel_soft_margin")))  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A published direction the report checks where the setting matches: ``better`` should
    beat ``worse`` on test accuracy."""

    source: str
    statement: str
    better: str
    worse: str
    applies: tuple[str, float]  # (setting attribute, minimum value)


CLAIMS = (
    Claim("Ma et al. 2020", "under heavy symmetric label noise, CE's last-epoch accuracy collapses "
          "while NCE+RCE holds", "softmax + nce_rce", "softmax + ce", ("symmetric", 0.4)),
    Claim("Cui et al. 2019", "class-balanced weighting helps under class imbalance",
          "softmax + ce [class_weight=effective_number]", "softmax + ce", ("imbalance", 10)),
    Claim("Cui et al. 2019", "class-balanced weighting helps the focal loss under imbalance",
          "softmax + focal [class_weight=effective_number]", "softmax + focal",
          ("imbalance", 10)),
)  # fmt: skip


def margin_for(metric: str, points: float) -> float:
    """The equivalence margin: ``points`` accuracy points for scores in [0, 1], NLL_MARGIN nats
    for the NLLs."""
    return NLL_MARGIN if "nll" in metric else points / 100


def versus(a: Pair, b: Pair, metric: str, points: float) -> stats.Comparison:
    """``a`` against ``b`` on ``metric`` over their seeds (:func:`stats.paired`), with the
    corrected variance where their splits were resampled per seed."""
    return stats.paired(a.name, b.name, metric, a.by_seed(metric), b.by_seed(metric),
                        margin_for(metric, points), metric in HIGHER,
                        max(a.test_share, b.test_share))  # fmt: skip


def compare(
    pairs: list[Pair], metric: str, points: float, rank_by: str = ACC
) -> list[stats.Comparison]:
    """Every pair against the best (by the mean of ``rank_by``) on ``metric``, Holm-adjusted."""
    best, *rest = by_metric(pairs, rank_by)
    found = [versus(p, best, metric, points) for p in rest
             if p.by_seed(metric) and best.by_seed(metric)]  # fmt: skip
    stats.adjust(found)
    return found


def same_function_checks(pairs: list[Pair], points: float) -> list[stats.Comparison]:
    """The A/A check: pairs that compute the same function, compared with each other on test
    accuracy (Holm over the comparisons made)."""
    names = {p.name: p for p in pairs}
    found = []
    for head, losses in SAME_FUNCTION:
        present = [names[f"{head} + {loss}"] for loss in losses if f"{head} + {loss}" in names]
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                found.append(versus(a, b, ACC, points))
    stats.adjust(found)
    return found


def claims_checked(pairs: list[Pair], setting: str, points: float) -> list[str]:
    """Where the setting is one a paper studied, whether these runs agree with its direction."""
    names = {p.name: p for p in pairs}
    noise = [part for part in setting.split(", ") if "noise" in part]
    imbalance = [part for part in setting.split(", ") if part.startswith("imbalance")]
    lines = []
    for claim in CLAIMS:
        kind, minimum = claim.applies
        if kind == "symmetric":
            ok = any(n.startswith("symmetric") and float(n.split()[-1]) >= minimum for n in noise)
        else:
            ok = any(float(i.split()[-1]) >= minimum for i in imbalance)
        better, worse = (names.get(n) or names.get(f"{n} [class_weight=none]")
                         for n in (claim.better, claim.worse))  # fmt: skip
        if not ok or better is None or worse is None:
            continue
        c = versus(better, worse, ACC, points)
        c.p_holm, c.p_tost_holm = c.p, c.p_tost
        verdict = c.verdict(1)
        if verdict.startswith("better"):
            agrees = "**agrees**"
        elif verdict.startswith(("worse", "equivalent")):
            agrees = "**disagrees**"
        else:
            agrees = "cannot tell yet"
        lines.append(f"- {claim.source}: {claim.statement}. Here {better.name} vs "
                     f"{worse.name} on test accuracy: {verdict} ({c.test}, p = {c.p:.3g}): "
                     f"{agrees}.")  # fmt: skip
    return lines


def verdict_of(comparisons: list[stats.Comparison], pair: str) -> stats.Comparison | None:
    return next((c for c in comparisons if c.pair == pair), None)


def opening(pairs: list[Pair], verdicts: dict[str, list[stats.Comparison]],
            checks: list[stats.Comparison], points: float,
            rank_by: str = ACC) -> list[str]:  # fmt: skip
    """A paragraph a user can act on: best (by the mean of ``rank_by``), equivalent, worse,
    undecided on it, best calibrated, and the A/A check."""
    best = by_metric(pairs, rank_by)[0]
    chosen = verdicts.get(rank_by, [])
    m = len(chosen)
    groups: dict[str, list[str]] = defaultdict(list)
    for c in chosen:
        v = c.verdict(m)
        groups[v.split()[0].rstrip(":")].append(
            f"{c.pair} ({v.split(' ', 1)[1]})" if not v.startswith("equivalent") else c.pair
        )
    mean, sd = best.mean_std(rank_by)
    seeds = f"{len(best.runs)} seed" + ("s" if len(best.runs) != 1 else "")
    text = [f"**Best: {best.name}**, {NAMES.get(rank_by, rank_by)} {mean:.4f} ± {sd:.4f} over "
            f"{seeds}."]  # fmt: skip
    if groups["equivalent"]:
        text.append(f"Equivalent to it within {margin_text(rank_by, points)}: "
                    f"{', '.join(groups['equivalent'])}.")  # fmt: skip
    if groups["worse"]:
        text.append(f"Worse: {'; '.join(groups['worse'])}.")
    if groups["better"]:
        text.append(
            f"Better (not first by mean, yet significantly): {'; '.join(groups['better'])}."
        )
    if groups["undecided"]:
        text.append(f"Undecided: {'; '.join(groups['undecided'])}.")
    calibrated = [p for p in pairs if p.values("test/nll").size]
    if calibrated:
        by_nll = min(calibrated, key=lambda p: p.mean_std("test/nll")[0])
        by_ece = min(calibrated, key=lambda p: p.mean_std("test/ece_ts")[0])
        text.append(
            f"Best calibrated: {by_nll.name} (lowest test NLL, "
            f"{by_nll.mean_std('test/nll')[0]:.4f}); after temperature scaling the "
            f"lowest ECE is {by_ece.name}'s ({by_ece.mean_std('test/ece_ts')[0]:.4f})."
        )
    if checks:
        fine = ("equivalent", "undecided")
        bad = [f"{c.pair} vs {c.reference}" for c in checks
               if not c.verdict(len(checks)).startswith(fine)]  # fmt: skip
        outcome = (
            "all came out equivalent or undecided, as they must: evidence that these verdicts "
            "are calibrated." if not bad else
            f"{len(bad)} came out different ({', '.join(bad)}): treat this setting's verdicts "
            "with caution."
        )  # fmt: skip
        text.append(f"A/A check: {len(checks)} comparisons of pairs that compute the same "
                    f"function {outcome}")  # fmt: skip
    return [" ".join(text)]
