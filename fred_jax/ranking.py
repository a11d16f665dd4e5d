"""DD-Ranking scores beside the accuracy (Li et al. 2025, "DD-Ranking: Rethinking the Evaluation
of Dataset Distillation", github.com/NUS-HPC-AI-Lab/DD-Ranking).

Test accuracy alone rewards what the evaluation adds (augmentation, soft labels) as much as
what the distilled data holds. DD-Ranking compares, under the *same* evaluation:

- IOR, improvement over random: ``acc(synthetic) - acc(random real subset of the same
  budget)``; positive when the distilled set beats simply picking real images;
- HLR, hard-label recovery: ``acc(full real training set) - acc(synthetic)`` with hard
  labels (FreD uses hard labels, so every accuracy here is a hard-label one);
- DDRS = ``(e^a - e^-1) / (e - e^-1)`` with ``a = w IOR - (1 - w) HLR`` on accuracies as
  fractions, ``w = 0.5`` by default: it maps ``a`` in [-1, 1] onto [0, 1], and ``a = 0``
  (e.g. IOR = HLR at ``w = 0.5``) gives 0.269.

The random subset has the synthetic set's budget in stored floats: ``ipc`` real images per
class (for FreD, ``ipc = n k / d`` of the export; more decoded instances do not buy a larger
random subset). IOR per seed pairs seed ``i`` of both evaluations; its spread is the
population std over seeds, as the accuracies'. HLR and DDRS need the full-data accuracy
(``full_accuracy``), which is a separate, long evaluation (e.g. ConvNet on CIFAR-10: 84.8%,
MTT's Table 1); without it only IOR is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_WEIGHT = 0.5


def ddrs(ior: float, hlr: float, weight: float = DEFAULT_WEIGHT) -> float:
    """DD-Ranking score from IOR and HLR in percentage points (module doc)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    a = weight * ior / 100.0 - (1.0 - weight) * hlr / 100.0
    return (math.exp(a) - math.exp(-1.0)) / (math.e - math.exp(-1.0))


def scores(syn_accs: Sequence[float], random_accs: Sequence[float],
           full_accuracy: float | None = None, weight: float = DEFAULT_WEIGHT) -> dict:
    """IOR (mean, std, per seed), and with ``full_accuracy`` HLR and DDRS, from per-seed test
    accuracies in percent of the synthetic set and of the random subset (same seeds)."""
    syn, rnd = np.asarray(syn_accs, np.float64), np.asarray(random_accs, np.float64)
    if syn.shape != rnd.shape or syn.ndim != 1 or not syn.size:
        raise ValueError(f"need the same number of seeds on both sides, got {syn.shape} and "
                         f"{rnd.shape}")
    ior = syn - rnd
    out = {"ior": float(ior.mean()), "ior_std": float(ior.std()),
           "ior_per_seed": [float(v) for v in ior], "random_mean": float(rnd.mean()),
           "random_std": float(rnd.std()), "random_accs": [float(v) for v in rnd]}
    if full_accuracy is not None:
        hlr = float(full_accuracy) - syn
        out.update(full_accuracy=float(full_accuracy), hlr=float(hlr.mean()),
                   hlr_std=float(hlr.std()), weight=weight)
        out["ddrs"] = ddrs(out["ior"], out["hlr"], weight)
    return out


def budget_ipc(num_instances: int, k: int, d: int) -> int:
    """Real images per class of the same budget as ``num_instances`` decoded instances of
    ``k`` kept values out of ``d`` per channel (at least 1)."""
    if min(num_instances, k, d) < 1 or k > d:
        raise ValueError(f"need num_instances, k >= 1 and k <= d, got {num_instances}, {k}, {d}")
    return max(1, (num_instances * k) // d)


def format_table(scores_by_model: dict[str, dict]) -> str:
    """Plain-text table of :func:`scores` per model (percentage points; DDRS in [0, 1])."""
    rows = [("model", "random subset (%)", "IOR", "HLR", "DDRS")]
    for name, s in scores_by_model.items():
        rows.append((name, f"{s['random_mean']:.2f} +- {s['random_std']:.2f}",
                     f"{s['ior']:+.2f} +- {s['ior_std']:.2f}",
                     f"{s['hlr']:.2f}" if "hlr" in s else "-",
                     f"{s['ddrs']:.3f}" if "ddrs" in s else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
