"""DD-Ranking scores: IOR per seed, HLR and DDRS as DD-Ranking defines them."""

import math

import pytest

from fred_jax import ranking


def test_ddrs_endpoints_and_midpoint():
    assert ranking.ddrs(100.0, 0.0, weight=1.0) == pytest.approx(1.0)
    assert ranking.ddrs(0.0, 100.0, weight=0.0) == pytest.approx(0.0)
    assert ranking.ddrs(10.0, 10.0) == pytest.approx((1 - math.exp(-1)) / (math.e - math.exp(-1)))
    assert ranking.ddrs(20.0, 40.0) == pytest.approx(
        (math.exp(0.5 * 0.2 - 0.5 * 0.4) - math.exp(-1)) / (math.e - math.exp(-1)))
    with pytest.raises(ValueError, match="weight"):
        ranking.ddrs(1.0, 1.0, weight=1.5)


def test_scores_pair_seeds():
    out = ranking.scores([50.0, 52.0], [40.0, 46.0], full_accuracy=84.8)
    assert out["ior_per_seed"] == [10.0, 6.0]
    assert out["ior"] == pytest.approx(8.0) and out["ior_std"] == pytest.approx(2.0)
    assert out["hlr"] == pytest.approx(33.8) and out["hlr_std"] == pytest.approx(1.0)
    assert out["ddrs"] == pytest.approx(ranking.ddrs(8.0, 33.8))
    assert "hlr" not in ranking.scores([50.0], [40.0])
    with pytest.raises(ValueError, match="same number of seeds"):
        ranking.scores([50.0, 51.0], [40.0])


def test_budget_ipc_counts_stored_floats():
    assert ranking.budget_ipc(16, 64, 1024) == 1  # CIFAR-10 FreD ipc 1: 16 instances of k=64
    assert ranking.budget_ipc(4, 196, 784) == 1
    assert ranking.budget_ipc(10, 1024, 1024) == 10  # pixels
    with pytest.raises(ValueError):
        ranking.budget_ipc(4, 2000, 1024)


def test_format_table_lists_scores():
    table = ranking.format_table({"ConvNet": ranking.scores([50.0, 52.0], [40.0, 46.0], 84.8),
                                  "MLP": ranking.scores([30.0], [31.0])})
    lines = table.splitlines()
    assert lines[0].split() == ["model", "random", "subset", "(%)", "IOR", "HLR", "DDRS"]
    assert "+8.00 +- 2.00" in lines[2] and "33.80" in lines[2] and "43.00 +- 3.00" in lines[2]
    assert lines[3].split()[-2:] == ["-", "-"] and "-1.00 +- 0.00" in lines[3]
