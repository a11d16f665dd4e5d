"""Configuration validation (before any compute) and the command line."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

from fred_jax import configuration, data, mnist3d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
def test_shipped_configs_validate(path, tmp_path):
    config = _load(path)
    config.data_dir = str(tmp_path)  # a fake folder per local dataset: no real data needed
    (tmp_path / config.dataset).mkdir()
    (tmp_path / config.dataset / "file").write_text("x")
    if config.dataset in ("mnist3d", mnist3d.STANDIN):  # the h5 file, or MNIST to make it from
        (tmp_path / "mnist3d").mkdir(exist_ok=True)
        (tmp_path / "mnist3d" / mnist3d.FILE).write_text("x")
        (tmp_path / "mnist").mkdir(exist_ok=True)
    facts = configuration.validate(config)
    assert facts["instances_per_class"] >= 1
    assert config.dataset in data.NAMES


def _config(**fields):
    config = configuration.defaults()
    config.dataset = "mnist"
    config.k = 49
    config.data_dir = os.environ.get("FRED_DATA_DIR", "")
    config.update_from_flattened_dict(fields)
    return config


@pytest.mark.parametrize("fields, message", [
    ({"objective": "kd"}, r"config.objective: unknown objective 'kd'"),
    ({"model": "ConvNet7"}, r"config.model: unknown model 'ConvNet7'"),
    ({"eval.models": "ConvNet,Foo"}, r"config.eval.models: unknown model 'Foo'"),
    ({"dataset": "cifar11"}, r"config.dataset: unknown dataset 'cifar11'"),
    ({"k": 1000}, r"config.k: k=1000 .* only d=784 values per channel \(28x28\)"),
    ({"ipc": 0}, r"config.ipc: the budget gives no instance"),
    ({"transform": "fft"}, r"config.transform: unknown transform"),
    ({"transform": "dwt"}, r"config.lr_convention: 'torch_dct' rescales DCT"),
    ({"parameterization": "latent"}, r"config.parameterization"),
    ({"objective": "dc", "ipc": 3}, r"config.dc.outer_loop: no reference loop schedule"),
    ({"objective": "dc", "model": "ConvNetBN"}, r"config.model: ConvNetBN has BatchNorm"),
    ({"dsa_strategy": "color_blur"}, r"config.dsa_strategy: unknown DSA op"),
    ({"lr": -1.0}, r"config.lr: must be > 0"),
    ({"conv_impl": "fft"}, r"config.conv_impl: 'fft' is not one of \('auto', 'lax'"),
    ({"eval.conv_impl": "fft"}, r"config.eval.conv_impl: 'fft' is not one of \('auto', 'lax'"),
    ({"eval.dc_augment": "crop_blur", "eval.dsa": False}, r"config.eval.dc_augment: .*blur"),
    ({"eval.dc_augment": "crop"}, r"config.eval.dc_augment: the DC augmentation replaces DSA"),
    ({"baselines": "pixel,latent"}, r"config.baselines: 'latent': expected other"),
    ({"baselines": "fred"}, r"config.baselines: 'fred': expected other parameterizations"),
])
def test_bad_configs(fields, message):
    with pytest.raises(configuration.ConfigError, match=message):
        configuration.validate(_config(**fields))


def test_missing_data_says_where(tmp_path, monkeypatch):
    monkeypatch.setattr(configuration, "_prepared", lambda name: False)  # not built in tfds
    with pytest.raises(configuration.ConfigError, match=f"{tmp_path}/mnist .* missing or empty"):
        configuration.validate(_config(data_dir=str(tmp_path)))


def test_unknown_and_missing_fields():
    config = _config()
    config.lr_img = 1.0
    with pytest.raises(configuration.ConfigError, match="config.lr_img: unknown field"):
        configuration.validate(config)
    config = _config()
    del config.dm["batch_real"]
    with pytest.raises(configuration.ConfigError, match="config.dm.batch_real: missing field"):
        configuration.validate(config)


def test_cli_rejects_a_bad_config_before_loading_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fred_jax.main", "--config", "configs/quickstart.py",
         "--config.k=5000", f"--workdir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "config.k: k=5000" in proc.stderr
    assert not (tmp_path / "run").exists()
