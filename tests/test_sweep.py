"""The sweep command: variants in sub-workdirs, resume by skipping finished ones, table, figure."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from fred_jax import configuration, sweep
from test_train import dataset, small_config  # noqa: F401  (fixture)


def test_grid_parses_types_and_rejects_bad_fields():
    config = configuration.defaults()
    g = sweep.grid(config, ["k=16,32", "mask_kind=evr,low_pass"])
    assert g[0] == (("k", 16), ("mask_kind", "evr")) and len(g) == 4
    assert sweep.grid(config, ["zca=true"]) == [(("zca", True),)]
    assert sweep.grid(config, ["dm.batch_real=8"]) == [(("dm.batch_real", 8),)]
    with pytest.raises(ValueError, match="no config field 'kk'"):
        sweep.grid(config, ["kk=1"])
    with pytest.raises(ValueError, match="'x' is not a int"):
        sweep.grid(config, ["k=x"])
    with pytest.raises(ValueError, match="field=v1,v2"):
        sweep.grid(config, ["k"])


def test_sweep_runs_resumes_and_draws(dataset, tmp_path, monkeypatch):  # noqa: F811
    config = small_config()
    variants = sweep.grid(config, ["k=16,32"])
    rows = sweep.run(config, str(tmp_path), variants, dataset=dataset, progress=False)
    assert [r["instances_per_class"] for _, r in rows] == [4, 2]  # 64 // k
    for overrides, results in rows:
        sub = tmp_path / sweep.variant_name(overrides)
        assert (sub / "results.json").exists() and results["k"] == dict(overrides)["k"]

    # A second call reads the finished variants back instead of training again.
    calls = []
    monkeypatch.setattr("fred_jax.train.run", lambda *a, **k: calls.append(a))
    again = sweep.run(config, str(tmp_path), variants, dataset=dataset, progress=False)
    assert not calls and [r["accuracy"] for _, r in again] == [r["accuracy"] for _, r in rows]
    monkeypatch.undo()

    baseline = sweep.run(config, str(tmp_path / "baseline"), [(("parameterization", "pixel"),)],
                         dataset=dataset, progress=False)[0]
    records = sweep.table(rows, baseline)
    assert [r["baseline"] for r in records] == [False, False, True]
    assert records[2]["instances_per_class"] == 1 and records[2]["stored_floats"] == 3 * 64
    csv_path, md_path = sweep.write_table(records, str(tmp_path))
    with open(csv_path) as f:
        read = list(csv.DictReader(f))
    assert [float(r["accuracy_mean"]) for r in read] == [r["accuracy_mean"] for r in records]
    assert "| k=16 | MLP |" in open(md_path).read()
    png = sweep.plot(records, ["k"], str(tmp_path / "sweep.png"))
    image = np.asarray(Image.open(png))
    assert image.shape[0] > 100 and image.std() > 0


def test_invalid_variant_stops_before_any_run(dataset, tmp_path):  # noqa: F811
    config = small_config()
    with pytest.raises(configuration.ConfigError, match="variant k=1000: config.k"):
        sweep.run(config, str(tmp_path), sweep.grid(config, ["k=16,1000"]), dataset=dataset)
    assert not os.listdir(tmp_path)


def test_baselines_become_variants_at_the_same_budget():
    config = configuration.defaults()
    assert sweep.baseline_variants(config) == []
    config.baselines = "pixel"
    (variant,) = sweep.baseline_variants(config)
    assert variant == (("parameterization", "pixel"),)
    assert sweep.variant_name(variant) == "parameterization=pixel"
    pixel = sweep.apply(config, variant)
    assert pixel.parameterization == "pixel" and pixel.ipc == config.ipc
    assert pixel.baselines == ""  # the baseline runs no baselines of its own
    assert sweep.check(config, [variant])[0][1].parameterization == "pixel"  # it validates
    assert config.parameterization == "fred"  # the original is untouched
