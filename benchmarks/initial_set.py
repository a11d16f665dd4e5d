"""Evaluate a config's initial synthetic set (iteration 0: real images through the masks), with
the config's evaluation protocol at a fixed rate: the baseline a distillation run must beat.

    python benchmarks/initial_set.py --config configs/mnist_tm_cpu.py [--lr 0.01] [field=value ...]

Same initialisation as ``fred_jax.main`` (``fred_jax.train.create``: seed, parameterization, k,
masks) and the evaluation key of a final evaluation at step 0; prints mean +- std and the
per-seed accuracies as one JSON line.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from fred_jax import augment, configuration, data, evaluate, synset, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--lr", type=float, default=0.01, help="evaluation learning rate")
    p.add_argument("overrides", nargs="*", help="config fields, e.g. k=98 eval.num_eval=5")
    a = p.parse_args()
    config = configuration.from_file(a.config)
    for item in a.overrides:
        field, value = item.split("=", 1)
        *path, last = field.split(".")
        node = config
        for name in path:
            node = node[name]
        node[last] = type(node[last])(value)
    dataset = data.load(config.dataset, data_dir=config.data_dir or None, zca=config.zca,
                        norm_stats=config.norm_stats)
    setup = train.create(config, dataset)
    x, y = synset.flat(train.current_synset(setup, setup.state))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 2), 0)
    models = [m.strip() for m in config.eval.models.split(",") if m.strip()]
    results = evaluate.evaluate_synset(
        key, np.asarray(x), np.asarray(y), dataset, models=models, epochs=int(config.eval.epochs),
        lr=a.lr, num_eval=int(config.eval.num_eval), batch_size=int(config.eval.batch_size),
        dsa=bool(config.eval.dsa), dsa_strategy=config.dsa_strategy or augment.STRATEGY,
        dc_strategy=config.eval.dc_augment, progress=False)
    print(json.dumps({m: {k: r[k] for k in ("mean", "std", "accs")} for m, r in results.items()}))


if __name__ == "__main__":
    main()
