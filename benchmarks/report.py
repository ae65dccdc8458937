"""Render benchmarks/README.md's result tables from the committed JSON in results/.

python benchmarks/report.py
"""

from __future__ import annotations

import json
import re
from typing import Any

from cache_int8 import table as cache_int8_table
from cache_scale import table as cache_scale_table
from common import RESULTS, ROOT
from latency_runtime import table as latency_runtime_table
from scale_search import table as scale_search_table
from serve_load import table as serve_load_table

README = ROOT / "benchmarks" / "README.md"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _mean_cell(h: dict[str, Any]) -> str:
    if h["validation_mean"] is None:
        return "none"
    std = "" if h["validation_std"] is None else f" ± {100 * h['validation_std']:.1f}"
    return f"{100 * h['validation_mean']:.1f}{std}"


def quality_table(data: dict[str, Any]) -> str:
    rows = [
        "| task (validation split) | search seeds | best reference | best front head | gain | recommended head | gain | cheapest within 1 pt | gain | FLOPs vs reference | Spearman |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def gain(h: dict[str, Any] | None) -> str:
        return (
            "-" if h is None or h["gain_points_mean"] is None else f"{h['gain_points_mean']:+.1f}"
        )

    for task, t in data["tasks"].items():
        s = t["summary"]
        names = ", ".join(sorted({r["reference"]["name"] for r in t["runs"].values()}))
        cheap, rec = s["cheapest"], s.get("recommended")  # runs before 2026-12-01 lack it
        ratio = cheap["flops_vs_reference"]
        rows.append(
            f"| {task} ({VALIDATION_NAMES.get(task, 'GLUE dev')}) | {s['reference']['runs']} | "
            f"{_mean_cell(s['reference'])} ({names}) | {_mean_cell(s['best'])} | "
            f"{gain(s['best'])} | {_mean_cell(rec) if rec else '-'} | {gain(rec)} | "
            f"{_mean_cell(cheap)} | {gain(cheap)} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{s['spearman_median']:.2f} |"
        )
    # Seed by seed: the validation scores of the best reference / the best front head (and
    # what it is: the reference itself where nothing beat it on search-val) / the
    # recommended head, with the recommendation's paired-bootstrap p on search-val.
    seeds = sorted({k for t in data["tasks"].values() for k in t["runs"]}, key=int)
    rows += ["", "| task | " + " | ".join(f"seed {k}" for k in seeds) + " |"]
    rows.append("|---|" + "---|" * len(seeds))
    for task, t in data["tasks"].items():
        cells = []
        for k in seeds:
            r = t["runs"].get(k)
            if r is None:
                cells.append("-")
                continue
            ref, best = r["reference"], r["best"]
            what = ref["name"] if best["id"] == ref["id"] else f"`{best['summary']}`"
            cell = f"{100 * ref['validation']:.1f} / {100 * best['validation']:.1f}"
            if "recommended" in r:
                rec, lead = r["recommended"], r["recommendation"]["lead"]
                took = "reference" if rec["id"] == ref["id"] else "best"
                test = "" if lead is None else f", p={lead['p_value']:.3f}"
                cell += f" / {100 * rec['validation']:.1f} ({took}{test})"
            cells.append(f"{cell}, {what}")
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# What each task's validation split is (../shared/glue/README.md): named for what it is.
VALIDATION_NAMES = {
    "cola": "out-of-domain dev half",
    "mrpc": "MSR test set",
}


def svr_table(data: dict[str, Any]) -> str:
    rows = [
        "| task (validation split) | seeds | reference (validation) | HV NSGA-II | HV random | ratio | HV added to references, NSGA-II vs random | best search-val, NSGA-II vs random | best head, NSGA-II | best head, random | Spearman |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, t in data["tasks"].items():
        seeds, s = t["seeds"], t["summary"]
        fitness = " / ".join(
            f"{100 * v['nsga']['best_search_val']:.1f} vs {100 * v['random']['best_search_val']:.1f}"
            for v in seeds.values()
        )
        refs = ", ".join(
            f"{v['reference']} {100 * v['reference_validation']:.1f}" for v in seeds.values()
        )
        hv = {
            m: " / ".join(f"{v[m]['hypervolume']:.4f}" for v in seeds.values())
            for m in ("nsga", "random")
        }
        key = "hypervolume_gain_over_references"  # runs before 2026-11-30 lack it
        added = " / ".join(
            f"{v['nsga'][key]:.3f} vs {v['random'][key]:.3f}" if key in v["nsga"] else "-"
            for v in seeds.values()
        )
        std = s["best_validation_std"]
        best = {
            m: f"{100 * s['best_validation_mean'][m]:.1f}"
            + ("" if std[m] is None else f" ± {100 * std[m]:.1f}")
            for m in ("nsga", "random")
        }
        ratio = s["hypervolume_ratio"]
        split = VALIDATION_NAMES.get(task, "GLUE dev")
        rows.append(
            f"| {task} ({split}) | {len(seeds)} | {refs} | {hv['nsga']} | {hv['random']} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | {added} | {fitness} | {best['nsga']} | "
            f"{best['random']} | {s['spearman_median']:.2f} |"
        )
    return "\n".join(rows)


def speed_table(data: dict[str, Any]) -> str:
    c, s = data["cache"], data["search"]
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| plain encoder pass, {c['examples']} SST-2 sentences | {c['plain_pass_seconds']} s |",
        f"| cache pass (token states and pooled vectors written) | {c['cache_pass_seconds']} s = {c['cache_over_plain']}x the plain pass |",
        f"| cache on disk (8,000 sentences) | {c['cache_bytes'] / 2**20:.0f} MiB |",
    ]
    modes = data.get("search_modes") or {"together": s}
    names = {"alone": "heads one by one", "together": "whole-generation training"}
    for mode, r in modes.items():
        rows += [
            f"| search, {names[mode]}: evaluations (population {r['population']}, {r['generations']} generations) | {r['evaluations']} in {r['search_seconds']} s |",
            f"| **evaluations per hour, {names[mode]}** | **{r['evaluations_per_hour']}** |",
            f"| training time per head ({names[mode]}): mean / median / max | {r['mean_train_seconds']} / {r['median_train_seconds']} / {r['max_train_seconds']} s |",
        ]
    same = data.get("same_results")
    if isinstance(same, dict):
        rows.append(
            f"| same archive either way ({same['config']}; {same['evaluations']} evaluations) | {same['same_scores_in_order']} |"
        )
    rows.append(f"| FLOPs + latency per new architecture (mean) | {s['mean_measure_seconds']} s |")
    return "\n".join(rows)


def multifidelity_table(data: dict[str, Any]) -> str:
    rows = [
        "| task | seeds | evals in time: full vs halving (its full-budget ones) | HV over best reference: full vs halving | median | HV over chance: full vs halving | median | halving's time to full's HV (over chance) | dropped heads that would enter the front |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, t in data["tasks"].items():
        seeds = list(t["seeds"].values())

        def per_seed(f: Any, seeds: list[dict[str, Any]] = seeds) -> str:
            return " / ".join(f(v) for v in seeds)

        evals = per_seed(
            lambda v: (
                f"{v['full']['evaluations_in_time']} vs {v['halving']['evaluations_in_time']} ({v['halving']['full_budget_in_time']})"
            )
        )
        hv_ref = per_seed(
            lambda v: (
                f"{v['compare_over_best_reference']['full']:.3f} vs {v['compare_over_best_reference']['halving']:.3f}"
            )
        )
        hv_chance = per_seed(
            lambda v: (
                f"{v['compare_over_chance']['full']:.3f} vs {v['compare_over_chance']['halving']:.3f}"
            )
        )

        def share(v: dict[str, Any]) -> str:
            x = v["compare_over_chance"]["halving_time_to_full_share"]
            return "not reached" if x is None else f"{x:.2f}"

        drops = [v["halving"]["dropped"] for v in seeds]
        dropped = f"{sum(d['would_enter_front'] for d in drops)} of {sum(d['trained_to_full'] for d in drops)}"
        m = t["summary"]
        med = {
            k: f"{m[k]['median_full']:.3f} vs {m[k]['median_halving']:.3f}"
            for k in ("over_best_reference", "over_chance")
        }
        rows.append(
            f"| {task} | {len(t['seeds'])} | {evals} | {hv_ref} | {med['over_best_reference']} | {hv_chance} | {med['over_chance']} | {per_seed(share)} | {dropped} |"
        )
    return "\n".join(rows)


def export_table(data: dict[str, Any]) -> str:
    rows = [
        "| head | runtime | batch | length | p50 ms | p95 ms | seq/s | vs PyTorch | GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, h in data["heads"].items():
        base = {
            (r["batch"], r["length"]): r["p50_ms"] for r in h["rows"] if r["runtime"] == "pytorch"
        }
        for r in h["rows"]:
            speed = base[(r["batch"], r["length"])] / r["p50_ms"]
            rows.append(
                f"| {name} | {r['runtime']} | {r['batch']} | {r['length']} | {r['p50_ms']:.2f} | "
                f"{r['p95_ms']:.2f} | {r['throughput']:.0f} | {speed:.2f}x | {r.get('gflops_per_s', 0):.0f} |"
            )
    rows += [
        "",
        "| head | validation: PyTorch / fp32 / optimized / int8 | int8 loss | peak RSS: predict int8 / fp32 / PyTorch |",
        "|---|---|---|---|",
    ]
    for name, h in data["heads"].items():
        v, rss = h["validation"], h["rss_mib"]
        rows.append(
            f"| {name} (`{h['summary']}`) | {100 * h['validation_torch']:.2f} / {100 * v['fp32']:.2f} / "
            f"{100 * v['optimized']:.2f} / {100 * v['int8']:.2f} | {h['int8_metric_drop_points']:+.2f} pt | "
            f"{rss['predict_ort_int8']:.0f} / {rss['predict_ort_fp32']:.0f} / {rss['pytorch']:.0f} MiB |"
        )
    return "\n".join(rows)


def ceiling_table(data: dict[str, Any]) -> str:
    names = ["Q, K, V (one fused product)", "attention output", "FFN in", "FFN out",
             "QK^T, every head", "PV, every head"]  # fmt: skip
    rows = [
        "| product, per layer | shape | PyTorch ms | ORT fp32 ms | ORT int8 ms | GFLOP/s: PyTorch / fp32 / int8 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in [
        *zip(names, data["products"], strict=True),
        ("peak: 2048^3", data["peak_2048"]),
    ]:
        ms, g = r["ms"], r["gflops_per_s"]
        rows.append(
            f"| {name} | {'x'.join(map(str, r['shape']))} | {ms['pytorch']:.3f} | {ms['ort-fp32']:.3f} | "
            f"{ms['ort-int8']:.3f} | {g['pytorch']:.0f} / {g['ort-fp32']:.0f} / {g['ort-int8']:.0f} |"
        )
    t, ceil, rest = data["products_ms"], data["ceiling_vs_eager"], data["rest_budget_ms"]
    eager = max(data["pytorch_eager_encoder_ms"])
    rows += [
        "",
        "| | ORT fp32 | ORT int8 |",
        "|---|---|---|",
        f"| all products, {data['layers']} layers (ms) | {t['ort-fp32']:.2f} | {t['ort-int8']:.2f} |",
        f"| PyTorch eager, whole encoder (ms) | {eager:.2f} | {eager:.2f} |",
        f"| **ceiling** = eager / products | **{ceil['ort-fp32']:.2f}x** | **{ceil['ort-int8']:.2f}x** |",
        f"| target | {data['targets_vs_eager']['ort-fp32']:.0f}x | {data['targets_vs_eager']['ort-int8']:.0f}x |",
        f"| time the target leaves for all other work (ms) | {rest['ort-fp32']:.2f} | {rest['ort-int8']:.2f} |",
    ]
    sln = data.get("skip_layer_norm")
    if sln:
        rows += [
            "",
            f"Residual add + LayerNorm of one {'x'.join(map(str, sln['shape']))} activation: "
            f"PyTorch {1e3 * sln['pytorch_ms']:.0f} us, ORT SkipLayerNormalization "
            f"{1e3 * sln['ort_ms']:.0f} us.",
        ]
    prof = data.get("profile")
    if prof:
        rows += [
            "",
            f"Where an exported model's time goes (`{prof['head']}`, ORT profiler, ms per run):",
            "",
        ]
        rows += ["| variant | total | largest operators |", "|---|---|---|"]
        for variant, ops in prof["ms_by_op"].items():
            top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(ops.items())[:5])
            rows.append(f"| {variant} | {sum(ops.values()):.2f} | {top} |")
    return "\n".join(rows)


def gpu_table(data: dict[str, Any]) -> str:
    rows = [
        f"GPU: {data['gpu']}, torch {data['torch']} (CUDA {data['cuda']}), model: {data['model']}",
        "",
        "| search | evaluations | failed | evaluations/hour | s per head | s per 1,000 examples per epoch | validation of the best search-val head | baseline validation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("frozen", "finetune"):
        r = data[name]
        best = max(r["front"], key=lambda e: e["score"])["validation"]
        rows.append(
            f"| {name} ({r['search_train_examples']} train examples) | {r['evaluations']} | {r['failed']} | "
            f"{r['evaluations_per_hour']} | {r['mean_train_seconds']} | {r['seconds_per_1000_examples_epoch']} | "
            f"{100 * best:.1f} | {100 * r['baseline']['validation']:.1f} |"
        )
    lat = data["eager_latency_baseline"]
    rows += ["", "PyTorch eager latency of the baseline fused model (CUDA events, median of 50): "
             + ", ".join(f"{k.replace('_ms', '')} {v:.2f} ms" for k, v in lat.items())]  # fmt: skip
    return "\n".join(rows)


def gpu_export_table(data: dict[str, Any]) -> str:
    bench = data["bench"]
    rows = [
        f"Providers: {', '.join(data['providers'])}; variant on the GPU: {data['variant_on_gpu']}; "
        f"torch imported by the runtime: {data['torch_imported_by_runtime']}; labels agree with "
        f"the CPU fp32 session: {data['labels_agree']}. Head: `{data['head']}`.",
        "",
        "| variant | max abs diff | label flips | validation (ONNX) | validation (PyTorch) |",
        "|---|---|---|---|---|",
    ]
    for p in data["parity"]:
        rows.append(
            f"| {p['variant']} | {p['max_abs_diff']:.1e} | {p['label_flips']} | "
            f"{100 * p['validation']:.2f} | {100 * p['validation_torch']:.2f} |"
        )
    rows += [
        "",
        f"`moohead bench --device {bench['device']}` (p50 ms; ORT with IO binding, PyTorch with CUDA events):",
        "",
        "| batch | length | pytorch | onnx-fp32 | onnx-optimized | onnx-fp16 |",
        "|---|---|---|---|---|---|",
    ]
    cells: dict[tuple[int, int], dict[str, float]] = {}
    for r in bench["rows"]:
        cells.setdefault((r["batch"], r["length"]), {})[r["runtime"]] = r["p50_ms"]
    for (batch, length), c in cells.items():
        names = ("pytorch", "onnx-fp32", "onnx-optimized", "onnx-fp16")
        rows.append(f"| {batch} | {length} | " + " | ".join(f"{c[n]:.2f}" for n in names) + " |")
    return "\n".join(rows)


def latency_modes_table(data: dict[str, Any]) -> str:
    modes = [k for k in data if isinstance(data[k], dict)]
    cases = list(data[modes[0]])
    rows = [
        f"GPU: {data['gpu']}, torch {data['torch']}; all-MiniLM-L6-v2, PyTorch eager, CUDA events, "
        "median of 50 (ms), a fresh process per setting:",
        "",
        "| setting | " + " | ".join(c.replace("_ms", "") for c in cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for m in modes:
        rows.append(f"| {m} | " + " | ".join(f"{data[m][c]:.2f}" for c in cases) + " |")
    return "\n".join(rows)


def finetune_table(data: dict[str, Any]) -> str:
    rows = ["| head | seconds (1 epoch) | s per 1,000 examples per epoch |", "|---|---|---|"]
    for name, r in data["heads"].items():
        rows.append(f"| {name} | {r['seconds']} | {r['seconds_per_1000_examples_epoch']} |")
    return "\n".join(rows)


def ray_table(data: dict[str, Any]) -> str:
    rows = [
        "| executor | wall s | evaluations | evaluations/hour | sum of training s |",
        "|---|---|---|---|---|",
    ]
    for name in ("local", "ray"):
        r = data[name]
        rows.append(
            f"| {name} | {r['seconds']} | {r['evaluations']} | {r['evaluations_per_hour']} | {r['train_seconds_sum']} |"
        )
    rows.append("")
    rows.append(
        f"Ray / local wall time: **{data['ray_over_local']}x**; same archive (genomes and scores): {data['same_archive']}."
    )
    return "\n".join(rows)


def _put_between(text: str, name: str, block: str) -> str:
    """``text`` with its ``name`` markers and what they hold replaced by ``block``."""
    pattern = rf"<!-- {name}:start -->.*?<!-- {name}:end -->"
    return re.sub(pattern, lambda _m: block, text, flags=re.S)


def main() -> None:
    text = README.read_text()
    renders = (
        ("search_quality", quality_table),
        ("search_quality_fill", quality_table),
        ("search_vs_random", svr_table),
        ("search_vs_random_init10", svr_table),
        ("search_vs_random_adapters", svr_table),
        ("search_speed", speed_table),
        ("multifidelity", multifidelity_table),
        ("multifidelity_wide", multifidelity_table),
        ("export_speed", export_table),
        ("cpu_ceiling", ceiling_table),
        ("gpu_check", gpu_table),
        ("gpu_export", gpu_export_table),
        ("gpu_latency_modes", latency_modes_table),
        ("finetune_cost", finetune_table),
        ("ray_overhead", ray_table),
        ("serve_load", serve_load_table),
        ("latency_runtime", latency_runtime_table),
        ("cache_int8", cache_int8_table),
        ("cache_scale", cache_scale_table),
        ("scale_search", scale_search_table),
    )
    for name, render in renders:
        data = _load(name)
        if data is None:
            continue
        block = f"<!-- {name}:start -->\n{render(data)}\n<!-- {name}:end -->"
        text = _put_between(text, name, block)
    README.write_text(text)


if __name__ == "__main__":
    main()
