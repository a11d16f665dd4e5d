"""The sweep command: variants in sub-workdirs, resume by skipping finished ones, table, figure."""

import csv
import importlib.util
import json
import os
import shlex

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


DWT = "transform=dwt,mask_kind=low_pass,lr_convention=orthonormal,lr=244.140625"


def test_variants_set_fields_together_after_the_grid():
    config = configuration.defaults()
    todo = sweep.collect_variants(config, ["mask_kind=evr,low_pass"], [DWT, "transform=dct"])
    assert [sweep.variant_name(o) for o in todo] == ["mask_kind=evr", "mask_kind=low_pass", DWT,
                                                      "transform=dct"]
    assert todo[2] == (("transform", "dwt"), ("mask_kind", "low_pass"),
                       ("lr_convention", "orthonormal"), ("lr", 244.140625))
    assert sweep.fields_of(todo) == ["mask_kind", "transform", "lr_convention", "lr"]
    (_, dwt), = sweep.check(config, [todo[2]])
    assert (dwt.transform, dwt.mask_kind, dwt.lr_convention, dwt.lr) == (
        "dwt", "low_pass", "orthonormal", 244.140625)
    assert sweep.collect_variants(config, specs=["k=49, ipc=2"]) == [(("k", 49), ("ipc", 2))]
    # The dwt without its lr convention is refused before anything runs.
    with pytest.raises(configuration.ConfigError, match="variant transform=dwt: config.lr_conv"):
        sweep.check(config, sweep.collect_variants(config, specs=["transform=dwt"]))
    with pytest.raises(ValueError, match="variants given twice: mask_kind=evr"):
        sweep.collect_variants(config, ["mask_kind=evr"], ["mask_kind=evr"])
    with pytest.raises(ValueError, match="field 'k' given twice"):
        sweep.parse_variant(config, "k=16,k=32")
    with pytest.raises(ValueError, match="field=value,field=value"):
        sweep.parse_variant(config, "transform=dwt,low_pass")
    with pytest.raises(ValueError, match="no config field 'transfrom'"):
        sweep.parse_variant(config, "transfrom=dwt")
    with pytest.raises(ValueError, match="nothing to run"):
        sweep.collect_variants(config)


def test_cli_runs_variants_in_named_subdirs_and_resumes(tmp_path, monkeypatch, capsys):
    """``main`` with --variant and --baseline; training is replaced by a stand-in that
    writes a finished ``results.json`` whose accuracy depends on the variant's config."""
    cfg_file = tmp_path / "study.py"
    cfg_file.write_text("from fred_jax import configuration\n\n\ndef get_config():\n"
                        "    c = configuration.defaults()\n    c.dataset = 'mnist'\n"
                        "    c.num_iterations = 3\n    c.baselines = 'pixel'\n    return c\n")
    calls = []

    def fake_run(cfg, sub, dataset=None, progress=True):
        calls.append((os.path.basename(sub), cfg.transform, cfg.mask_kind, cfg.lr_convention,
                      cfg.lr, cfg.parameterization, cfg.baselines))
        acc = {"dct": 60.0, "dft": 50.0, "dwt": 40.0}[cfg.transform] + (
            5.0 if cfg.parameterization == "pixel" else 0.0)
        results = {"iterations": 3, "instances_per_class": 2, "budget_parameters": 15680,
                   "accuracy": {"ConvNet": {"mean": acc, "std": 1.0, "accs": [acc - 1, acc + 1]}}}
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "results.json"), "w") as f:
            json.dump(results, f)
        return results

    monkeypatch.setattr("fred_jax.train.run", fake_run)
    dft = "transform=dft,lr_convention=orthonormal,lr=244.140625"
    argv = ["--config", str(cfg_file), "--workdir", str(tmp_path / "w"),
            "--variant", "transform=dct", "--variant", dft, "--variant", DWT,
            "--baseline", "parameterization=pixel"]
    assert sweep.main(argv) == 0
    assert calls == [("transform=dct", "dct", "evr", "torch_dct", 1e6, "fred", ""),
                     (dft, "dft", "evr", "orthonormal", 244.140625, "fred", ""),
                     (DWT, "dwt", "low_pass", "orthonormal", 244.140625, "fred", ""),
                     ("parameterization=pixel", "dct", "evr", "torch_dct", 1e6, "pixel", "")]
    assert sorted(os.listdir(tmp_path / "w")) == sorted(
        ["transform=dct", dft, DWT, "baseline", "sweep.csv", "sweep.md", "sweep.png"])
    with open(tmp_path / "w" / "sweep.csv") as f:
        read = list(csv.DictReader(f))
    assert [(r["variant"], r["transform"], r["mask_kind"], float(r["accuracy_mean"]))
            for r in read] == [("transform=dct", "dct", "", 60.0), (dft, "dft", "", 50.0),
                               (DWT, "dwt", "low_pass", 40.0),
                               ("baseline parameterization=pixel", "", "", 65.0)]
    assert f"| {DWT} | ConvNet | 40.00 +- 1.00 | 2 | 2 | 15680 |" in capsys.readouterr().out
    assert sweep.bar_label(read[2], sweep.fields_of(sweep.collect_variants(
        configuration.defaults(), specs=[DWT]))) == DWT.replace(",", "\n")

    # Run again: every variant is read back, nothing is trained.
    calls.clear()
    assert sweep.main(argv) == 0 and calls == []


def _documented_command(path: str) -> list[str]:
    """The ``python -m fred_jax.sweep`` command at the top of a study config's docstring."""
    doc = _module_doc(path)
    start = doc.index("python -m fred_jax.sweep")
    lines = []
    for line in doc[start:].splitlines():
        lines.append(line.rstrip("\\ "))
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(lines))[3:]


def _module_doc(path: str) -> str:
    spec = importlib.util.spec_from_file_location("study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__doc__


@pytest.mark.parametrize("name, expected", [
    ("study_mask_kind", [("mask_kind=evr", 64, "evr", 1e6, 16),
                         ("mask_kind=low_pass", 64, "low_pass", 1e6, 16),
                         ("mask_kind=band_stop", 64, "band_stop", 1e6, 16),
                         ("mask_kind=high_pass", 64, "high_pass", 1e6, 16),
                         ("mask_kind=random", 64, "random", 1e6, 16),
                         ("mask_kind=amplitude", 64, "amplitude", 1e6, 16)]),
    ("study_transform", [("transform=dct", 64, "evr", 1e6, 16),
                         ("transform=dft,lr_convention=orthonormal,lr=244.140625", 64, "evr",
                          1e6 / (4 * 32 * 32), 16),
                         ("transform=dwt,mask_kind=low_pass,lr_convention=orthonormal,"
                          "lr=244.140625", 64, "low_pass", 1e6 / (4 * 32 * 32), 16)]),
    ("study_budget", [(f"k={k}", k, "evr", 1e6, 1024 // k) for k in (16, 32, 64, 128, 256, 512)]),
])
def test_study_configs_run_their_documented_commands(name, expected):
    """Each study's documented sweep parses and validates at its paper budget (CIFAR-10, DM,
    ipc 1 = 30720 floats) with the pixel baseline; the rate of the non-DCT transforms is the
    DCT's rate for u, v > 0 under the official unit (1e6 / (4 * 32 * 32))."""
    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.py")
    args = _documented_command(path)
    opts = {flag: [v for f, v in zip(args, args[1:]) if f == flag]
            for flag in ("--sweep", "--variant", "--baseline")}
    config = configuration.from_file(path)
    assert (config.dataset, config.objective, config.ipc) == ("cifar10", "dm", 1)
    checked = sweep.check(config, sweep.collect_variants(config, opts["--sweep"],
                                                         opts["--variant"]))
    got = [(sweep.variant_name(o), c.k, c.mask_kind, c.lr,
            configuration.validate(c)["instances_per_class"]) for o, c in checked]
    assert got == expected
    assert opts["--baseline"] == ["parameterization=pixel"]
    (_, pixel), = sweep.check(config, [sweep.parse_variant(config, opts["--baseline"][0])])
    assert configuration.validate(pixel)["instances_per_class"] == 1
