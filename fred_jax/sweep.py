"""Run one config over a grid of field values, one sub-workdir each, and gather the results.

    python -m fred_jax.sweep --config configs/study_mask_kind.py --workdir runs/masks \
        --sweep mask_kind=evr,low_pass,band_stop,high_pass,random,amplitude
    python -m fred_jax.sweep --config configs/study_budget.py --workdir runs/budget \
        --sweep k=16,32,64,128,256 --baseline parameterization=pixel
    python -m fred_jax.sweep --config configs/study_transform.py --workdir runs/transforms \
        --variant transform=dct --variant transform=dft,lr_convention=orthonormal,lr=244.140625

Each variant distils into ``<workdir>/<field>=<value>[,...]`` through ``fred_jax.train.run``, so
an interrupted sweep resumes where it stopped and a finished variant (its ``results.json`` holds
the final evaluation) is read back, not run again. Several ``--sweep`` flags make the product
grid; each ``--variant`` adds one run whose fields are set together (a transform with its mask
kind and learning rate), after the grid. ``--baseline`` adds one run with those overrides (e.g.
the pixel baseline at the same budget), drawn as a dashed line. The gathered table goes to
``sweep.csv`` and ``sweep.md``, the figure to ``sweep.png``: accuracy against the value for one
numeric field (as the paper's Figure 9), bars per variant otherwise (Figures 8a/8b).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from typing import Any, Iterable, Sequence

Override = tuple[tuple[str, Any], ...]


def parse_value(config: Any, field: str, text: str) -> Any:
    """``text`` as the type of ``config.<field>`` (dotted), with a clear error for a bad field."""
    node = config
    for part in field.split("."):
        if part not in node:
            raise ValueError(f"--sweep: no config field {field!r}")
        node = node[part]
    if isinstance(node, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--sweep {field}: {text!r} is not a boolean")
        return text.lower() in ("true", "1")
    try:
        return type(node)(text) if node is not None else text
    except ValueError as e:
        raise ValueError(f"--sweep {field}: {text!r} is not a {type(node).__name__}") from e


def grid(config: Any, sweeps: Sequence[str]) -> list[Override]:
    """The product grid of ``field=v1,v2,...`` specifications as override tuples."""
    axes = []
    for spec in sweeps:
        field, sep, values = spec.partition("=")
        if not sep or not values:
            raise ValueError(f"--sweep expects field=v1,v2,..., got {spec!r}")
        axes.append([(field.strip(), parse_value(config, field.strip(), v.strip()))
                     for v in values.split(",") if v.strip()])
    return [tuple(combo) for combo in itertools.product(*axes)]


def parse_variant(config: Any, spec: str) -> Override:
    """One variant ``field=value,field=value`` (fields set together, e.g. a transform with its
    mask kind and learning rate) as an override tuple, in the order given."""
    overrides = []
    for item in spec.split(","):
        field, sep, value = item.partition("=")
        field, value = field.strip(), value.strip()
        if not sep or not field or not value:
            raise ValueError(f"--variant expects field=value,field=value,..., got {spec!r}")
        if field in dict(overrides):
            raise ValueError(f"--variant {spec!r}: field {field!r} given twice")
        overrides.append((field, parse_value(config, field, value)))
    return tuple(overrides)


def collect_variants(config: Any, sweeps: Sequence[str] = (), specs: Sequence[str] = ()
                     ) -> list[Override]:
    """The ``--sweep`` grid followed by the ``--variant`` runs; rejects an empty list and two
    variants that would share a sub-workdir."""
    out = (grid(config, sweeps) if sweeps else []) + [parse_variant(config, s) for s in specs]
    if not out:
        raise ValueError("nothing to run: give --sweep field=v1,v2,... or --variant f1=v1,f2=v2")
    names = [variant_name(o) for o in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"variants given twice: {', '.join(twice)}")
    return out


def fields_of(overrides: Iterable[Override]) -> list[str]:
    """The fields set by any of the variants, in order of first appearance."""
    return list(dict.fromkeys(f for o in overrides for f, _ in o))


def variant_name(overrides: Override) -> str:
    """Sub-workdir name of a variant, e.g. ``k=64,mask_kind=evr``."""
    return ",".join(f"{field}={value}" for field, value in overrides) or "base"


def apply(config: Any, overrides: Override) -> Any:
    """A copy of ``config`` with the overrides set. A variant runs no baselines of its own
    (``baselines`` is cleared: ``fred_jax.main`` runs them once, beside the main run)."""
    out = config.copy_and_resolve_references()
    out.baselines = ""
    out.update_from_flattened_dict(dict(overrides))
    return out


def finished_results(workdir: str, config: Any) -> dict | None:
    """The results of a variant that already ran to its last iteration with a final evaluation."""
    path = os.path.join(workdir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    done = results.get("iterations") == int(config.num_iterations) and results.get("accuracy")
    return results if done else None


def check(config: Any, variants: Iterable[Override], *, dataset: Any = None
          ) -> list[tuple[Override, Any]]:
    """Validate every variant's config (before any compute); returns ``(overrides, config)``."""
    from fred_jax import configuration

    configs = [(o, apply(config, o)) for o in variants]
    for overrides, cfg in configs:
        try:
            configuration.validate(cfg, dataset=dataset)
        except configuration.ConfigError as e:
            raise configuration.ConfigError(f"variant {variant_name(overrides)}: {e}") from e
    return configs


def baseline_variants(config: Any) -> list[Override]:
    """``config.baselines`` ("pixel", ...) as variants of the run at the same budget."""
    names = [b.strip() for b in config.baselines.split(",") if b.strip()]
    return [(("parameterization", name),) for name in names]


def run(config: Any, workdir: str, variants: Iterable[Override], *, dataset: Any = None,
        progress: bool = True) -> list[tuple[Override, dict]]:
    """Distil each variant into its sub-workdir (skipping finished ones); returns the results.
    Every variant is validated before the first one runs. ``dataset``: as ``train.run``'s."""
    from fred_jax import train  # deferred: the CLI validates before importing jax

    configs = check(config, variants, dataset=dataset)
    out = []
    for overrides, cfg in configs:
        sub = os.path.join(workdir, variant_name(overrides))
        results = finished_results(sub, cfg)
        if results is None:
            print(f"sweep: running {variant_name(overrides)} in {sub}", flush=True)
            results = train.run(cfg, sub, dataset=dataset, progress=progress)
        else:
            print(f"sweep: {variant_name(overrides)} already finished ({sub}/results.json)")
        out.append((overrides, results))
    return out


def table(rows: Sequence[tuple[Override, dict]], baseline: tuple[Override, dict] | None = None
          ) -> list[dict]:
    """One record per (variant, evaluated model): the swept values, accuracy mean/std, seeds,
    instances per class and stored floats."""
    records = []
    tagged = [(o, r, False) for o, r in rows] + ([(*baseline, True)] if baseline else [])
    for overrides, results, is_baseline in tagged:
        for model, acc in results.get("accuracy", {}).items():
            records.append({"variant": ("baseline " if is_baseline else "")
                            + variant_name(overrides),
                            **{f: v for f, v in overrides}, "model": model,
                            "accuracy_mean": round(float(acc["mean"]), 2),
                            "accuracy_std": round(float(acc["std"]), 2),
                            "seeds": len(acc.get("accs", [])),
                            "instances_per_class": results.get("instances_per_class"),
                            "stored_floats": results.get("budget_parameters"),
                            "baseline": is_baseline})
    return records


def write_table(records: list[dict], workdir: str) -> tuple[str, str]:
    """``sweep.csv`` and ``sweep.md`` in ``workdir``; returns their paths."""
    fields = list(dict.fromkeys(k for r in records for k in r))
    csv_path, md_path = os.path.join(workdir, "sweep.csv"), os.path.join(workdir, "sweep.md")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(records)
    shown = ["variant", "model", "accuracy", "seeds", "instances_per_class", "stored_floats"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in records:
        acc = f"{r['accuracy_mean']:.2f} +- {r['accuracy_std']:.2f}"
        lines.append(f"| {r['variant']} | {r['model']} | {acc} | {r['seeds']} | "
                     f"{r['instances_per_class']} | {r['stored_floats']} |")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return csv_path, md_path


def bar_label(record: dict, fields: Sequence[str]) -> str:
    """A bar's label: the value alone for one swept field, else one ``field=value`` a line."""
    if len(fields) == 1:
        return str(record.get(fields[0], record["variant"]))
    return record["variant"].replace(",", "\n")


def plot(records: list[dict], fields: Sequence[str], path: str, title: str = "") -> str:
    """Accuracy against the swept value (one numeric field) or bars per variant; the baseline
    as a dashed line. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in records if not r["baseline"]]
    numeric = len(fields) == 1 and all(isinstance(r.get(fields[0]), (int, float))
                                       and not isinstance(r.get(fields[0]), bool) for r in runs)
    wide = not numeric and len(fields) > 1  # multi-line bar labels need ~1.8 inch each
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(runs)) if wide else 6.0, 3.6), dpi=120)
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        if numeric:
            mine.sort(key=lambda r: r[fields[0]])
            ax.errorbar([r[fields[0]] for r in mine], [r["accuracy_mean"] for r in mine],
                        yerr=[r["accuracy_std"] for r in mine], marker="o", capsize=3,
                        label=f"FreD ({model})" if len(fields) == 1 else model)
        else:
            labels = [bar_label(r, fields) for r in mine]
            bars = ax.bar(labels, [r["accuracy_mean"] for r in mine],
                          yerr=[r["accuracy_std"] for r in mine], capsize=3, label=model)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center", color="white")
            ax.tick_params(axis="x", labelrotation=0 if wide else 30, labelsize=7 if wide else 10)
    for r in (r for r in records if r["baseline"]):
        ax.axhline(r["accuracy_mean"], linestyle="--", color="gray",
                   label=f"{r['variant']} ({r['model']})")
    ax.set_xlabel(fields[0] if len(fields) == 1 else "variant")
    ax.set_ylabel("test accuracy (%)")
    if numeric and fields[0] == "k":
        ax.set_xscale("log", base=2)
        values = sorted({r[fields[0]] for r in runs})
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
    ax.set_title(title)
    if numeric:
        ax.legend(fontsize=8)
    else:  # room above the bars for the legend
        ax.set_ylim(0, 1.3 * max(r["accuracy_mean"] + r["accuracy_std"] for r in records))
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from fred_jax import configuration, platform

    p = argparse.ArgumentParser(prog="python -m fred_jax.sweep",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="configuration file (configs/*.py)")
    p.add_argument("--workdir", required=True, help="folder of the sub-workdirs and the table")
    p.add_argument("--sweep", action="append", default=[],
                   help="field=v1,v2,... (repeat for a grid); dotted fields such as dm.batch_real")
    p.add_argument("--variant", action="append", default=[],
                   help="f1=v1,f2=v2,...: one more run with these fields set together (repeat "
                        "for several), e.g. transform=dwt,mask_kind=low_pass,"
                        "lr_convention=orthonormal,lr=244.140625")
    p.add_argument("--baseline", action="append", default=[],
                   help="field=value overrides of one extra run drawn as a dashed line")
    p.add_argument("--set", action="append", default=[],
                   help="field=value overrides applied to every run (e.g. num_iterations=100)")
    p.add_argument("--title", default="", help="figure title (default: the config file's name)")
    p.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    a = p.parse_args(argv)

    def body() -> list[dict]:
        config = configuration.from_file(a.config)
        base = tuple(o for spec in a.set for o in grid(config, [spec])[0])
        config = apply(config, base)
        platform.enable_compilation_cache(config.compilation_cache)
        todo = collect_variants(config, a.sweep, a.variant)
        fields = fields_of(todo)
        rows = run(config, a.workdir, todo)
        baseline = None
        if a.baseline:
            over = tuple(o for spec in a.baseline for o in grid(config, [spec])[0])
            baseline = run(config, os.path.join(a.workdir, "baseline"), [over])[0]
        records = table(rows, baseline)
        csv_path, md_path = write_table(records, a.workdir)
        png = plot(records, fields, os.path.join(a.workdir, "sweep.png"),
                   title=a.title or os.path.basename(a.config))
        with open(md_path) as f:
            print(f.read(), end="")
        print(f"table: {csv_path}, {md_path}; figure: {png}")
        return records

    configuration.run_command(body, a.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
