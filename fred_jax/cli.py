"""Command-line front ends of the library modules: flags, files, printing; the work is done by
:mod:`fred_jax.evaluate`, :mod:`fred_jax.coreset`, :mod:`fred_jax.experts` and
:mod:`fred_jax.visualize`. ``python -m fred_jax.evaluate``, ``python -m fred_jax.experts`` and
``python -m fred_jax.visualize`` run :func:`evaluate_command`, :func:`experts_command` and
:func:`visualize_command`.

Evaluate a synthetic set or a coreset baseline::

    python -m fred_jax.evaluate --synset export.npz --models ConvNet,AlexNet --num_eval 5 \\
        --epochs 1000 --lr 0.01 --out results.json
    python -m fred_jax.evaluate --coreset random --ipc 10 --dataset cifar10 --epochs 300 \\
        --out random_ipc10.json

Any set file (:mod:`fred_jax.setfiles`): ``--synset`` also takes plain ``.npz``/``.npy`` images
and the official code's ``images_best.pt`` (labels from ``labels_best.pt`` beside it) or
``res_*.pt``, with ``--dataset`` naming the data it was distilled from. ``--dd_ranking`` adds
the DD-Ranking scores (:mod:`fred_jax.ranking`: a random real subset of the same budget under
the same evaluation); ``--robustness`` tests the same networks on shifted test sets
(:mod:`fred_jax.robustness`)::

    python -m fred_jax.evaluate --synset runs/c10/synset_best.npz --dd_ranking
    python -m fred_jax.evaluate --synset images_best.pt --dataset cifar10 --budget_ipc 1
    python -m fred_jax.evaluate --synset runs/c10/synset_best.npz --robustness corrupt \\
        --out robust/results.json

Train expert trajectories (settings from the config's ``tm.experts`` section plus ``dataset``,
``zca``, ``model`` and ``dsa_strategy``; see ``configs/cifar10_ipc1.py``)::

    python -m fred_jax.experts --config configs/cifar10_ipc1.py
    python -m fred_jax.experts --config configs/mnist_ipc1.py --config.tm.experts.num_experts=4

Or import the official code's buffers (``TM/buffer.py``'s ``replay_buffer_<n>.pt``; see
:mod:`fred_jax.official_buffers`) instead of training::

    python -m fred_jax.experts --config configs/cifar10_ipc1.py --from_official DIR

Pictures of an export: ``python -m fred_jax.visualize --synset export.npz --out DIR`` writes
``DIR/synset_images.png`` and ``DIR/synset_masks.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from fred_jax import augment, configuration, conv
from fred_jax.setfiles import EXPORT_FIELDS, LAYOUTS, load_export

def _key_flags_of_main(names: Sequence[str]) -> None:
    """Show ``names`` in ``--help`` of the running script (absl lists the main module's)."""
    from absl import flags

    for name in names:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])


# ------------------------------------------------------------------------------- evaluate


def _define_evaluate_flags() -> None:
    from absl import flags

    from fred_jax import coreset

    flags.DEFINE_string("synset", None, "set to evaluate: a fred_jax export .npz, plain .npz/.npy, "
                        "or the official images_best.pt / res_*.pt (fred_jax.setfiles)")
    flags.DEFINE_enum("coreset", None, list(coreset.CORESET_METHODS), "evaluate a coreset baseline")
    flags.DEFINE_integer("ipc", 10, "images per class of the coreset")
    flags.DEFINE_string("dataset", None, "dataset of the coreset (a synset names its own)")
    flags.DEFINE_string("data_dir", None, "dataset files (default: $FRED_DATA_DIR)")
    flags.DEFINE_boolean("zca", False, "ZCA-whitened data (a synset's export decides itself)")
    flags.DEFINE_list("models", ["ConvNet"], "architectures to train")
    flags.DEFINE_string("mode", None, "reference eval mode S/M/W/D/A/P/N (overrides --models)")
    flags.DEFINE_string("distill_model", "ConvNet", "architecture of mode S")
    flags.DEFINE_integer("num_eval", 5, "seeds per architecture (trained at the same time)")
    flags.DEFINE_integer("epochs", 1000, "training epochs E (the loop runs E + 1, lr x0.1 "
                         "after epoch E//2 + 1)")
    flags.DEFINE_float("lr", None, "learning rate (default: the synset's learned 'syn_lr' "
                       "if it has one, else 0.01)")
    flags.DEFINE_integer("batch_size", 256, "training batch size")
    flags.DEFINE_boolean("dsa", True, "DSA augmentation on every training batch")
    flags.DEFINE_string("dsa_strategy", augment.STRATEGY, "DSA strategy")
    flags.DEFINE_string("dc_augment", "", "DC augmentation ops instead of DSA (needs --nodsa), "
                        "e.g. crop_scale_rotate as the official DC evaluates MNIST")
    flags.DEFINE_enum("conv_impl", "auto", ["auto", *conv.CONV_IMPLS],
                      "convolution implementation (auto: the backend's, fred_jax.platform)")
    flags.DEFINE_integer("seed", 0, "PRNG seed")
    flags.DEFINE_integer("herding_epochs", 0, "epochs to train the herding embedding network "
                         "on the full training set (0: randomly initialised)")
    flags.DEFINE_string("labels", None, "labels file of an image-only --synset (default: "
                        "labels_* beside images_*)")
    flags.DEFINE_enum("layout", "auto", list(LAYOUTS), "image layout of a --synset file that is "
                      "not a fred_jax export (torch files are NCHW)")
    flags.DEFINE_integer("index", 0, "which experiment of an official res_*.pt file")
    flags.DEFINE_enum("norm_stats", "dataset", ["dataset", "cifar10"], "normalisation of a "
                      "--synset file that is not an export (the official TM code: cifar10 for "
                      "CIFAR-100)")
    flags.DEFINE_boolean("dd_ranking", False, "also evaluate a random real subset of the same "
                         "budget and report DD-Ranking's IOR (and HLR/DDRS with --full_accuracy)")
    flags.DEFINE_integer("budget_ipc", None, "images per class of the set's budget for "
                         "--dd_ranking (an export knows its own: n k / d)")
    flags.DEFINE_float("full_accuracy", None, "test accuracy (%) of the same network trained on "
                       "the full training set, for HLR and DDRS")
    flags.DEFINE_enum("robustness", None, ["cifar10c", "cifar10.1", "imagenet_c", "corrupt"],
                      "after training, test the same networks on shifted test sets: official "
                      "layouts under --robustness_dir, or 'corrupt' (CIFAR-10-C corruptions of "
                      "the test set made on the fly)")
    flags.DEFINE_string("robustness_dir", None, "CIFAR-10-C folder, CIFAR-10.1 folder or "
                        "ImageNet-C root")
    flags.DEFINE_list("corruptions", [], "corruptions to test (default: the official 15, or "
                      "every on-the-fly one)")
    flags.DEFINE_list("severities", ["1", "2", "3", "4", "5"], "severities to test")
    flags.DEFINE_integer("robustness_num_test", None, "'corrupt': a class-balanced subset of "
                         "the test set (default: all of it)")
    flags.DEFINE_string("out", None, "JSON file for the results")
    flags.DEFINE_boolean("progress", True, "progress bars")
    flags.DEFINE_boolean("verbose", False, "show the traceback of an error")
    _key_flags_of_main([
        "synset", "coreset", "ipc", "dataset", "data_dir", "zca", "models", "mode",
        "distill_model", "num_eval", "epochs", "lr", "batch_size", "dsa", "dsa_strategy",
        "dc_augment", "conv_impl", "seed", "herding_epochs", "labels", "layout", "index",
        "norm_stats", "dd_ranking", "budget_ipc", "full_accuracy", "robustness",
        "robustness_dir", "corruptions", "severities", "robustness_num_test", "out", "progress",
        "verbose"])


def _load_set(f: Any, key: Any) -> tuple[Any, Any, Any, dict, int | None]:
    """``(x, y, dataset, config updates, budget ipc)`` of ``--synset`` or ``--coreset``."""
    import jax

    from fred_jax import coreset, data, ranking, setfiles

    if f.synset is None:
        if f.dataset is None:
            raise ValueError("--coreset needs --dataset")
        dataset = data.load(f.dataset, data_dir=f.data_dir, zca=f.zca)
        x, y = coreset.coreset(jax.random.fold_in(key, 1), dataset, f.ipc, f.coreset,
                               herding_epochs=f.herding_epochs, conv_impl=f.conv_impl,
                               progress=f.progress)
        return x, y, dataset, {}, f.ipc
    loaded = setfiles.read(f.synset, labels=f.labels, layout=f.layout, index=f.index)
    meta = loaded.meta
    if meta["format"] == "fred_jax export":
        name, zca = loaded.dataset, bool(meta.get("zca", False))
        norm_stats = meta.get("norm_stats", "dataset")
        n, k = meta["coeffs_shape"][1:3]
        budget = ranking.budget_ipc(n, k, int(np.prod(meta["image_shape"][:-1])))
    else:
        if f.dataset is None:
            raise ValueError(f"{f.synset} ({meta['format']}) does not name its dataset; pass "
                             f"--dataset (and --zca / --norm_stats as it was distilled)")
        name, zca, norm_stats, budget = f.dataset, f.zca, f.norm_stats, None
    dataset = data.load(name, data_dir=f.data_dir, zca=zca, norm_stats=norm_stats)
    if loaded.x.shape[1:] != tuple(dataset.image_shape):
        raise ValueError(f"{f.synset}: images of shape {loaded.x.shape[1:]}, {name} has "
                         f"{tuple(dataset.image_shape)}")
    if loaded.y.size and (loaded.y.min() < 0 or loaded.y.max() >= dataset.num_classes):
        raise ValueError(f"{f.synset}: labels in [{loaded.y.min()}, {loaded.y.max()}], {name} "
                         f"has classes 0 to {dataset.num_classes - 1}; pass the --dataset the "
                         f"set was made for")
    updates = {"dataset": name, "zca": zca, "norm_stats": norm_stats, "format": meta["format"]}
    if meta.get("syn_lr") is not None:
        updates["syn_lr"] = float(meta["syn_lr"])
    return loaded.x, loaded.y, dataset, updates, f.budget_ipc or budget


def check_output_file(path: str, flag: str) -> None:
    """Raise ValueError unless a file can be written at ``path`` (the value of ``flag``): not
    a folder, under a folder (not a file) where a file can be created; checked before any
    training so that a bad path does not waste it."""
    import tempfile

    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: a folder; give a file name, e.g. "
                         f"{os.path.join(path, 'results.json')}")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder; give another {flag}")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write into {parent} "
                         f"({configuration.one_line(e, 200)}); give another {flag}") from e


def _run_evaluate() -> None:
    import jax
    from absl import flags

    from fred_jax import coreset, evaluate, ranking, robustness, safeio

    f = flags.FLAGS
    if (f.synset is None) == (f.coreset is None):
        raise ValueError("give exactly one of --synset and --coreset")
    if f.out:
        check_output_file(f.out, "--out")
    key = jax.random.key(f.seed)
    config: dict[str, Any] = {k: f[k].value for k in (
        "synset", "coreset", "ipc", "dataset", "zca", "models", "mode", "distill_model",
        "num_eval", "epochs", "batch_size", "dsa", "dsa_strategy", "dc_augment", "conv_impl",
        "seed", "herding_epochs", "dd_ranking", "robustness")}
    x, y, dataset, updates, budget = _load_set(f, key)
    config.update(updates)
    lr = f.lr if f.lr is not None else updates.get("syn_lr", 0.01)
    if f.dd_ranking and budget is None:
        raise ValueError("--dd_ranking: this file does not say its budget; pass --budget_ipc "
                         "(real images per class the set's storage buys, e.g. 1 for ipc 1)")
    if f.dd_ranking and f.robustness_num_test:
        raise ValueError("--dd_ranking compares accuracies on the whole test set; leave out "
                         "--robustness_num_test (which tests a subset) or run them apart")
    sets = None
    if f.robustness:  # readers check their files before any training
        sets = robustness.sets_for(f.robustness, dataset, f.robustness_dir,
                                   names=f.corruptions or None,
                                   severities=[int(v) for v in f.severities], seed=f.seed,
                                   num_test=f.robustness_num_test)
    config.update(lr=lr, num_train=int(len(x)))
    train_kwargs = dict(batch_size=f.batch_size, dsa=f.dsa, dsa_strategy=f.dsa_strategy,
                        dc_strategy=f.dc_augment, conv_impl=f.conv_impl, progress=f.progress)
    names = evaluate.eval_pool(f.mode, f.distill_model) if f.mode else tuple(f.models)
    out: dict[str, Any] = {"config": config}
    if sets is None:
        results = evaluate.evaluate_synset(
            jax.random.fold_in(key, 2), x, y, dataset, models=names, epochs=f.epochs, lr=lr,
            num_eval=f.num_eval, **train_kwargs)
    else:  # model j uses fold_in(key, j) as evaluate_synset does: the same clean numbers
        rob = {name: robustness.evaluate(jax.random.fold_in(jax.random.fold_in(key, 2), j), x, y,
                                         dataset, sets, model=name, num_eval=f.num_eval,
                                         epochs=f.epochs, lr=lr, **train_kwargs)
               for j, name in enumerate(names)}
        results = {name: r["train"] for name, r in rob.items()}
        out["robustness"] = rob
        for name, r in rob.items():
            print(f"{name}:\n{robustness.format_table(r)}")
            if f.out:
                robustness.write_report(r, os.path.dirname(f.out) or ".", f"robustness_{name}")
    out["results"] = results
    print(evaluate.format_table(results))
    if f.dd_ranking:
        rx, ry = coreset.coreset(jax.random.fold_in(key, 3), dataset, budget, "random")
        rnd = evaluate.evaluate_synset(jax.random.fold_in(key, 2), rx, ry, dataset,
                                       models=names, epochs=f.epochs, lr=f.lr or 0.01,
                                       num_eval=f.num_eval, **train_kwargs)
        out["dd_ranking"] = {name: {"budget_ipc": budget, **ranking.scores(
            results[name]["accs"], rnd[name]["accs"], f.full_accuracy)} for name in names}
        print(ranking.format_table(out["dd_ranking"]))
    if f.out:
        os.makedirs(os.path.dirname(f.out) or ".", exist_ok=True)
        safeio.write_json(f.out, out, indent=1)  # whole or not at all; errors name the path
        print(f"wrote {f.out}")


def evaluate_command() -> None:
    """``python -m fred_jax.evaluate``."""
    from absl import flags

    _define_evaluate_flags()
    configuration.run_app(lambda argv: configuration.run_command(_run_evaluate,
                                                                 flags.FLAGS.verbose))


# -------------------------------------------------------------------------------- experts


def experts_command() -> None:
    """``python -m fred_jax.experts``: train the experts of a config's ``tm`` section."""
    from absl import flags
    from ml_collections import config_flags

    config_flag = config_flags.DEFINE_config_file("config", None, "config file with a tm section")
    flags.DEFINE_string("from_official", None, "instead of training, import the official "
                        "buffer.py's replay_buffer_<n>.pt files of this folder into "
                        "config.tm.experts.dir (fred_jax.official_buffers); the config must "
                        "name how they were trained (dataset, model, tm.experts)")
    flags.DEFINE_boolean("verbose", False, "show the traceback of an error")
    _key_flags_of_main(["config", "from_official", "verbose"])

    def main(argv: list[str]) -> None:
        from fred_jax import expert_store, experts, official_buffers, platform, sharding

        del argv
        config = config_flag.value
        folder = flags.FLAGS.from_official
        if folder:
            meta = configuration.run_command(
                lambda: official_buffers.import_from_config(config, folder), flags.FLAGS.verbose)
            count = len(expert_store.completed_experts(config.tm.experts.dir, meta["epochs"],
                                                       meta["num_params"]))
            print(f"{count} official experts x {meta['epochs']} epochs from {folder} "
                  f"({', '.join(meta['official_files'])}) in {config.tm.experts.dir}")
            return
        sharding.maybe_initialize_distributed()

        def train() -> dict:
            platform.enable_compilation_cache(config.get("compilation_cache", "auto"))
            return experts.train_from_config(config)

        meta = configuration.run_command(train, flags.FLAGS.verbose)
        if not sharding.is_main_process():
            return
        accs = [meta["test_acc"][k] for k in sorted(meta["test_acc"], key=int)]
        print(f"{len(accs)} experts in {config.tm.experts.dir}: test accuracy mean "
              f"{np.mean(accs):.4f}, min {np.min(accs):.4f}, max {np.max(accs):.4f} "
              f"(per expert: {os.path.join(config.tm.experts.dir, expert_store.META_FILE)})")

    configuration.run_app(main)


# ------------------------------------------------------------------------------ visualize


def visualize_command(argv: Sequence[str] | None = None) -> tuple[str, str]:
    """``python -m fred_jax.visualize``: decode an export and write its image and mask grids;
    returns the two paths. A missing, foreign or non-finite export ends with one line
    ``error: ...`` (exit status 1; ``--verbose``: the traceback)."""
    from fred_jax import visualize

    parser = argparse.ArgumentParser(prog="python -m fred_jax.visualize",
                                     description=visualize.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synset", required=True, help="export .npz written by synset.save")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--max_per_class", type=int, default=10)
    parser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return configuration.run_command(lambda: _write_grids(args), args.verbose)


def _write_grids(args: argparse.Namespace) -> tuple[str, str]:
    from fred_jax import visualize

    s, meta = load_export(args.synset)
    os.makedirs(args.out, exist_ok=True)
    images_path = os.path.join(args.out, "synset_images.png")
    masks_path = os.path.join(args.out, "synset_masks.png")
    visualize.save_image_grid(images_path, np.asarray(s.images()), meta["mean"], meta["std"],
                              args.max_per_class)
    visualize.save_mask_grid(masks_path, visualize.indices_to_masks(s.indices,
                                                                    s.image_shape[:-1]))
    print(images_path)
    print(masks_path)
    return images_path, masks_path


__all__ = ["EXPORT_FIELDS", "evaluate_command", "experts_command", "load_export",
           "visualize_command"]
