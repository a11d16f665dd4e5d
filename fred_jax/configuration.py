"""Distillation configuration: the documented defaults every ``configs/*.py`` starts from, and
the validation that runs before any compute (``validate``).

Defaults are FreD + DM on CIFAR-10 at a budget of 2 images per class with the official code's
hyper-parameters (sdh0818/FreD ``DM/scripts/run_DM_FreD.sh``).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Callable, TypeVar

import ml_collections

from fred_jax import datasets, parameterization
from fred_jax.checks import MAX_LR, ConfigError, require_one_of, require_positive
from fred_jax.checks import fail as _fail
from fred_jax.objectives import dc_config, dm_config, tm_config

T = TypeVar("T")


def defaults() -> ml_collections.ConfigDict:
    """The full set of fields with their defaults (each one commented)."""
    c = ml_collections.ConfigDict()
    # --- data
    c.dataset = "cifar10"  # fred_jax.data name: mnist, fashion_mnist, cifar10, cifar100, svhn, ...
    c.data_dir = ""  # local originals; "" = $FRED_DATA_DIR (see fred_jax.data)
    c.zca = False  # ZCA-whiten the images (the reference does for some TM settings)
    c.norm_stats = "dataset"  # whose mean/std normalise the images: "dataset" (its own) or
    # "cifar10" (the official TM code normalises CIFAR-100 with CIFAR-10's; fred_jax.data)
    c.seed = 0  # root seed: init (fold 0), distillation steps (fold 1), evaluation (fold 2)

    # --- the synthetic set (budget and parameterisation)
    c.parameterization = "fred"  # "fred": k kept coefficients; "pixel": identity with k = d
    c.ipc = 2  # budget in images per class: C * ipc * d * ch stored floats
    c.k = 64  # FreD: kept coefficients per channel and instance (n = ipc * d // k per class)
    c.transform = "dct"  # FreD transform: dct, dft, dwt (identity = pixels, use parameterization)
    c.mask_kind = "evr"  # frequency selection: evr (paper), low_pass, high_pass, band_stop, ...
    c.baselines = ""  # after the run, also distil these parameterizations ("pixel") at the same
    # budget in <workdir>/baselines/parameterization=<name> and print them beside this run

    # --- distillation
    c.objective = "dm"  # dm (distribution matching) or dc (gradient matching)
    c.model = "ConvNetD3"  # matching network (fred_jax.models name; ConvNetD3 == ConvNet)
    c.conv_impl = "auto"  # distillation convs: auto (CPU: im2col for TM/DC, tapgrad for DM; else lax)
    c.num_iterations = 20000  # distillation iterations (the reference's --Iteration)
    c.lr = 1e6  # coefficient learning rate (FreD, in the unit given by lr_convention)
    c.lr_convention = "torch_dct"  # torch_dct: lr as in the official code (unnormalised DCT,
    # rescaled per coefficient by 1/s^2, see fred_jax.synset); orthonormal: lr used as is
    c.lr_pixel = 1.0  # pixel learning rate for parameterization="pixel" (DM 1.0, DC 0.1)
    c.momentum = 0.5  # SGD momentum on the coefficients (reference mom_freq / mom_img)
    c.dsa_strategy = "color_crop_cutout_flip_scale_rotate"  # DSA ops; "" = no augmentation

    # --- the objectives' own sections (fred_jax.objectives.<name>_config); TM configs add
    # config.tm = tm_config.defaults() (an expert folder DM and DC runs have no use for)
    c.dm = dm_config.defaults()
    c.dc = dc_config.defaults()

    # --- evaluation (fred_jax.evaluate protocol)
    c.eval = ml_collections.ConfigDict()
    c.eval.every = 2000  # evaluate every this many iterations (0: only at the end)
    c.eval.models = "ConvNetD3"  # comma-separated architectures trained on the synthetic set
    c.eval.num_eval = 5  # seeds per architecture (trained at once); 0 = no evaluation
    c.eval.epochs = 1000  # training epochs (reference: 1000 DM/TM, 300 DC without augmentation)
    c.eval.lr = 0.01  # SGD rate (momentum 0.9, wd 5e-4, x0.1 at half the epochs)
    c.eval.batch_size = 256  # training batch size
    c.eval.dsa = True  # DSA on every training batch
    c.eval.dc_augment = ""  # instead of DSA (eval.dsa=False): DC augmentation ops, one per image
    # (fred_jax.dc_augment; the official DC evaluates MNIST with "crop_scale_rotate"); "" = none
    c.eval.validation_per_class = 0  # ours: hold out this many real train images per class
    # (not distilled from) and also pick synset_best_validation.npz by accuracy on them; the
    # official code picks its best set by test accuracy only (synset_best.npz, kept)
    c.eval.conv_impl = "auto"  # evaluation convolutions: auto = tapgrad on CPU, lax elsewhere

    # --- bookkeeping
    c.log_every = 10  # write metrics every this many iterations
    c.checkpoint_every = 500  # orbax checkpoint every this many iterations (and at the end)
    c.keep_checkpoints = 2  # checkpoints kept on disk
    c.divergence_growth = 300.0  # ours: stop when the learnable values' RMS exceeds this many
    # times its initial value (fred_jax.failures; README "When things go wrong"); 0 = rule off
    c.divergence_loss_growth = 10.0  # ours: stop when the loss exceeds this many times the
    # median of its first 10 iterations; 0 = rule off (NaN/inf always stop the run)

    # --- scale (fred_jax.sharding)
    c.num_devices = 0  # devices in the mesh: 0 = all devices of all hosts; N = the first N
    # (1: unsharded programs; a multi-host run must use all)
    c.compilation_cache = "auto"  # ours: keep compiled programs for later runs (fred_jax.platform):
    # "auto" = $XDG_CACHE_HOME/fred_jax/xla (~/.cache), "" = off, or a folder
    return c


def one_line(error: BaseException, limit: int | None = None) -> str:
    """``error``'s message on one line (whitespace collapsed, cut at ``limit`` characters);
    prefixed by its type unless it is one of the errors whose message says it all
    (ValueError, OSError, RuntimeError and their subclasses, e.g. :class:`ConfigError`)."""
    text = " ".join(str(error).split()) or "(no message)"
    if limit is not None and len(text) > limit:
        text = text[:limit - 3] + "..."
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return text
    return f"{type(error).__name__}: {text}"


def run_command(body: Callable[[], T], verbose: bool) -> T:
    """``body()`` of a command-line tool: an exception ends the process with ``error: <one
    line>`` on stderr and exit status 1 (or the exception's ``exit_status``; 130 for Ctrl-C),
    without a traceback unless ``verbose``."""
    try:
        return body()
    except KeyboardInterrupt:
        if verbose:
            raise
        print("error: interrupted (Ctrl-C) before the command finished; rerun it to start "
              "again", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if verbose:
            raise
        expected = isinstance(e, (ValueError, OSError, RuntimeError))
        print(f"error: {one_line(e)}" + ("" if expected else
                                         " (rerun with --verbose for the traceback)"),
              file=sys.stderr)
        sys.exit(int(getattr(e, "exit_status", 1)))


DATASETS: dict[str, tuple[tuple[int, ...], int]] = {
    name: (spec.image_shape, spec.num_classes) for name, spec in datasets.SPECS.items()}
"""Dataset name -> (image shape, classes), read from the table of ``fred_jax.datasets``."""

NORM_STATS = datasets.NORM_STATS


HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def config_file_problem(argv: list[str]) -> str | None:
    """What is wrong with the ``--config`` file named in ``argv`` (None: nothing, or no such
    flag), on one line with what to do: a missing file, a folder, a syntax error, no
    ``get_config``, or a ``get_config()`` that fails. Config files load without JAX, so it is
    loaded here once more before absl loads it, which would print a traceback."""
    values = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    values += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    if not values:
        return None
    path, _, argument = values[-1].partition(":")
    where = f"--config {path}"
    todo = "give a config file such as configs/quickstart.py"
    if not os.path.exists(path):
        return f"{where}: no such file; {todo}"
    if not os.path.isfile(path):
        return f"{where}: not a file; {todo}"
    try:
        with open(path, encoding="utf-8") as f:
            compile(f.read(), path, "exec")
    except SyntaxError as e:
        return f"{where}: syntax error at line {e.lineno} ({e.msg}); fix the file"
    except (OSError, ValueError) as e:
        return f"{where}: cannot be read ({one_line(e, 200)}); {todo}"
    if argument:
        return None  # get_config(argument): left to absl
    try:
        from_file(path)
    except AttributeError as e:
        if "get_config" in str(e):
            return (f"{where}: defines no get_config(); a config file returns its ConfigDict "
                    f"from get_config() (see configs/quickstart.py)")
        return f"{where}: get_config() failed ({one_line(e, 200)}); fix the file"
    except Exception as e:
        return f"{where}: get_config() failed ({one_line(e, 200)}); fix the file"
    return None


def run_app(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, except that ``--help`` prints the usage and exits with status 0
    (absl's exits with 1), a bad ``--config`` file ends with one line (:func:`config_file_problem`)
    and so does any other error while absl parses the flags (``--verbose``: the traceback)."""
    from absl import app

    argv = sys.argv[1:]
    asked = [arg for arg in argv if arg in HELP_FLAGS]
    if asked:
        app.usage(shorthelp=asked[0] != "--helpfull", writeto_stdout=True, exitcode=0)
    verbose = any(arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
                  for arg in argv)
    problem = None if verbose else config_file_problem(argv)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    try:
        app.run(main)
    except Exception as e:  # raised while absl parses the flags: main's end in run_command
        if verbose:
            raise
        print(f"error: {one_line(e, 500)} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        if verbose:
            raise
        print("error: interrupted (Ctrl-C) before the command started; nothing was done",
              file=sys.stderr)
        sys.exit(130)


def require_conv_impl(config: Any, field: str, *, auto: bool) -> None:
    """Raise ConfigError unless the dotted ``field`` names a convolution implementation
    (``models.CONV_IMPLS``, or ``"auto"`` where ``auto``: the backend's default)."""
    from fred_jax import models  # deferred like validate's: configs load without JAX

    require_one_of(config, field, ("auto", *models.CONV_IMPLS) if auto else models.CONV_IMPLS)


def _check_fields(config: Any) -> None:
    """Every default field present, no unknown (misspelt) ones; the ``tm`` section, which only
    TM configs carry, against its own defaults when present."""

    def walk(ref, cfg, prefix):
        for name in cfg.keys():
            if name not in ref:
                _fail(prefix + name, f"unknown field (known: {sorted(ref.keys())})")
        for name in ref.keys():
            if name not in cfg:
                _fail(prefix + name, "missing field (start configs from configuration.defaults())")
            if isinstance(ref[name], ml_collections.ConfigDict):
                walk(ref[name], cfg[name], f"{prefix}{name}.")

    reference = defaults()
    if "tm" in config:
        reference.tm = tm_config.defaults()
    walk(reference, config, "")


def validate(config: Any, *, dataset: Any = None) -> dict:
    """Check ``config`` before any compute; raise :class:`ConfigError` with a clear message.

    dataset: an already loaded dataset (its image shape is used and no files are checked);
    None: the shape comes from :data:`DATASETS` and the data files must be where
    ``fred_jax.data`` looks for them. Returns the resolved facts: ``image_shape``,
    ``num_classes``, ``k``, ``instances_per_class``.
    """
    from fred_jax import augment, masks, models, objectives, synset, transforms

    _check_fields(config)
    if config.parameterization not in parameterization.PARAMETERIZATIONS:
        _fail("parameterization", f"{config.parameterization!r} is not one of "
                                  f"{parameterization.PARAMETERIZATIONS}")
    if config.objective not in objectives.NAMES:
        _fail("objective", f"unknown objective {config.objective!r}; expected one of "
                           f"{objectives.NAMES}")
    for field, name in [("model", config.model)] + [
            ("eval.models", m.strip()) for m in config.eval.models.split(",") if m.strip()]:
        if name not in models.ARCHS:
            _fail(field, f"unknown model {name!r}; expected one of {models.ARCHS}")
    if int(config.eval.num_eval) > 0 and not config.eval.models.strip(" ,"):
        _fail("eval.models", "no model to evaluate; name at least one (e.g. ConvNetD3), or set "
                             "eval.num_eval=0 to skip the evaluation")
    require_conv_impl(config, "conv_impl", auto=True)
    require_conv_impl(config, "eval.conv_impl", auto=True)
    if config.transform not in transforms.NAMES:
        _fail("transform", f"unknown transform {config.transform!r}; expected one of "
                           f"{transforms.NAMES}")
    if config.mask_kind not in masks.KINDS:
        _fail("mask_kind", f"unknown mask kind {config.mask_kind!r}; expected one of {masks.KINDS}")
    if config.lr_convention not in parameterization.LR_CONVENTIONS:
        _fail("lr_convention", f"{config.lr_convention!r} is not one of "
                               f"{parameterization.LR_CONVENTIONS}")
    if config.norm_stats not in NORM_STATS:
        _fail("norm_stats", f"{config.norm_stats!r} is not one of {NORM_STATS}")
    for name in (b.strip() for b in config.baselines.split(",") if b.strip()):
        if name not in parameterization.PARAMETERIZATIONS or name == config.parameterization:
            _fail("baselines", f"{name!r}: expected other parameterizations than "
                               f"{config.parameterization!r} among "
                               f"{parameterization.PARAMETERIZATIONS}")
    try:
        augment.parse_strategy(config.dsa_strategy)
    except ValueError as e:
        _fail("dsa_strategy", str(e))
    if config.eval.dc_augment:
        from fred_jax import dc_augment

        try:
            dc_ops = dc_augment.parse_strategy(config.eval.dc_augment)
        except ValueError as e:
            _fail("eval.dc_augment", str(e))
        if dc_ops and config.eval.dsa:
            _fail("eval.dc_augment", "the DC augmentation replaces DSA in evaluation: set "
                                     "eval.dsa=False with it")
    require_positive(config, ("num_iterations", "log_every", "checkpoint_every",
                              "keep_checkpoints", "eval.batch_size", "eval.epochs"))
    for field in ("divergence_growth", "divergence_loss_growth"):
        if not (float(config[field]) == 0 or float(config[field]) > 1):
            _fail(field, f"must be > 1 (a growth factor) or 0 (rule off), got {config[field]}")
    if int(config.eval.validation_per_class) < 0:
        _fail("eval.validation_per_class", f"must be >= 0 (0: no validation split), got "
                                           f"{config.eval.validation_per_class}")
    if int(config.eval.every) < 0 or int(config.eval.num_eval) < 0:
        _fail("eval", "every and num_eval must be >= 0")
    for field in ("lr", "lr_pixel", "eval.lr"):
        value = config.eval.lr if field == "eval.lr" else config[field]
        if not 0 < float(value) <= MAX_LR:
            _fail(field, f"must be > 0 and <= {MAX_LR:g}, got {value}")
    if not 0 <= float(config.momentum) < 1:
        _fail("momentum", f"must be in [0, 1), got {config.momentum}")
    if int(config.num_devices) < 0:
        _fail("num_devices", f"must be >= 0 (0: all devices), got {config.num_devices}")

    if dataset is not None:
        image_shape, num_classes = tuple(dataset.image_shape), int(dataset.num_classes)
    else:
        if config.dataset not in DATASETS:
            _fail("dataset", f"unknown dataset {config.dataset!r}; expected one of "
                             f"{tuple(DATASETS)}")
        image_shape, num_classes = DATASETS[config.dataset]
    if config.dsa_strategy not in ("", "none", "None") and len(image_shape) != 3:
        _fail("dsa_strategy", f"DSA needs 2-D images, {config.dataset} has shape {image_shape}")
    spatial = image_shape[:-1]
    d = math.prod(spatial)
    try:
        resolved = parameterization.resolve(config, spatial)
    except ValueError as e:
        _fail("parameterization", str(e))
    if resolved.lr_convention == "torch_dct" and resolved.transform != "dct":
        _fail("lr_convention", f"'torch_dct' rescales DCT coefficients; transform is "
                               f"{resolved.transform!r} (use 'orthonormal')")
    k = resolved.k
    if resolved.k_field and k < 1:
        _fail(resolved.k_field, f"must be >= 1 kept coefficient per channel, got {k}")
    if resolved.k_field and k > d:
        _fail(resolved.k_field, f"k={k} kept coefficients per channel, but a {config.dataset} "
                                f"image has only d={d} values per channel "
                                f"({'x'.join(map(str, spatial))})")
    try:
        n = synset.instances_per_class(int(config.ipc), spatial, k)
    except ValueError as e:
        _fail("ipc", f"the budget gives no instance: {e}")
    for section in (dm_config, dc_config, tm_config):  # each objective checks its own
        section.check(config)
    if dataset is None:
        _check_data(config)
    return {"image_shape": image_shape, "num_classes": num_classes, "k": k,
            "instances_per_class": n}


LOCAL_DATASETS = datasets.LOCAL_NAMES
"""Datasets that ``fred_jax.data`` builds from original files: read from ``data_dir/<name>/``
when a data dir is set, downloaded otherwise."""


def _prepared(name: str) -> bool:
    """Whether ``fred_jax.data`` has already built ``name`` into the tfds data dir (then it
    reads no original file)."""
    from fred_jax import sources  # deferred: numpy, and tfds when asked

    return sources.is_prepared(name)


def _check_data(config: Any) -> None:
    """Offline datasets need their folder of original files where ``fred_jax.data`` reads it
    (``config.data_dir``, else ``$FRED_DATA_DIR``) unless tfds already holds the built
    dataset; the loader itself checks the files."""
    if datasets.SPECS.get(config.dataset) and datasets.SPECS[config.dataset].source == "mnist3d":
        _check_mnist3d(config)
        return
    if config.dataset not in LOCAL_DATASETS:
        return
    root = config.data_dir or os.environ.get("FRED_DATA_DIR", "")
    if not root:
        return  # no data dir: fred_jax.data downloads the originals on first use
    folder = os.path.join(root, config.dataset)
    if (not os.path.isdir(folder) or not os.listdir(folder)) and not _prepared(config.dataset):
        source = "config.data_dir" if config.data_dir else "$FRED_DATA_DIR"
        _fail("dataset", f"data for {config.dataset!r} not found: {folder} (from {source}) is "
                         f"missing or empty; put the original files there (see "
                         f"fred_jax.data and shared/data/README.md)")


def _check_mnist3d(config: Any) -> None:
    """3D MNIST needs its h5 file under the data dir; the stand-in needs it, an already
    generated copy, or the MNIST originals to generate it from (``fred_jax.mnist3d.locate``)."""
    from fred_jax import mnist3d  # numpy only

    root = config.data_dir or os.environ.get("FRED_DATA_DIR", "")
    try:
        path = mnist3d.locate(config.dataset, root or None, generate=False)
    except FileNotFoundError as e:
        _fail("dataset", str(e))
    if config.dataset == "mnist3d" and not path.is_file():
        _fail("dataset", f"3D MNIST file not found: {path}; download {mnist3d.FILE} from "
                         f"{mnist3d.KAGGLE_URL}, or use dataset {mnist3d.STANDIN!r}")


def from_file(path: str) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file at ``path`` (configs import their base this way:
    ``configuration.from_file(os.path.join(os.path.dirname(__file__), "base.py"))``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"),
                                                  path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no config file at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
