"""``moohead export``: fuse a run's head with its encoder, export, gate, derive variants.

Everything is written into a temporary sibling of the target folder, which is renamed into
place only after every variant passed the parity gate: a failed or interrupted export
leaves nothing under the final name, and an existing folder is replaced only by a model
that passed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moohead.data import load_split
from moohead.errors import MooheadError
from moohead.export.config import ExportConfig
from moohead.export.hf_layout import write_hf_layout
from moohead.export.model_dir import (
    FORMAT,
    MANIFEST,
    TOKENIZER_FILE,
    VARIANT_FILES,
    file_record,
)
from moohead.export.optimize import optimize_graph, quantize_int8
from moohead.export.runtime import Encoder
from moohead.export.triton import write_triton_model
from moohead.export.validate import ValidationRun, validate_onnx
from moohead.files import atomic_write_json, package_versions
from moohead.onnx_graph import OPSET, export_onnx
from moohead.ort_session import make_session, providers_for
from moohead.pick import PickConfig, choose
from moohead.rundir import RunDir, run_data_dir
from moohead.runhead import RunHead, load_run_head

Log = Callable[[str], None]


def chosen_entry(run_dir: Path, cfg: ExportConfig) -> tuple[dict[str, Any], str]:
    """The head to export: ``--id``, ``--knee``, ``--recommended``, or the pick recorded by
    ``moohead pick``."""
    run = RunDir(run_dir)
    doc = run.read_front_refined()
    if cfg.id is not None or cfg.knee or cfg.recommended:
        rule = PickConfig(recommended=cfg.recommended, knee=cfg.knee, id=cfg.id)
        return choose(doc, rule), rule.rule()
    pick = run.read_pick()
    try:
        pick_id = int(pick["id"])
    except (TypeError, ValueError) as exc:
        raise MooheadError(
            f"the recorded pick of {run_dir} is corrupted ({exc}); run moohead pick again"
        ) from exc
    return choose(doc, PickConfig(id=pick_id)), f"recorded pick ({pick['rule']})"


def _validation_splits(rh: RunHead, data_dir: Path | None) -> dict[str, Any]:
    folder = run_data_dir(rh.config, data_dir)
    return {s: load_split(rh.task, s, folder) for s in rh.task.validation_splits}


def manifest(
    rh: RunHead, rule: str, variants: dict[str, Any], gate: list[dict[str, Any]], run_dir: Path
) -> dict[str, Any]:
    e = rh.entry
    return {
        "format": FORMAT,
        "task": {
            "name": rh.task.name,
            "text_columns": list(rh.task.text_columns),
            "num_labels": rh.task.num_labels,
            "metrics": list(rh.task.metrics),
        },
        "labels": rh.task.labels,
        "max_length": rh.max_length,
        "inputs": rh.model.side_names,
        "siamese": rh.model.siamese,
        "genome": rh.genome.to_dict(),
        "summary": rh.genome.describe(),
        "encoder": {
            "name": rh.info.name,
            "fingerprint": rh.info.fingerprint,
            "hidden_size": rh.info.hidden_size,
            "vocab_size": int(rh.model.encoder.config.vocab_size),
            "layers_kept": rh.genome.depth,
            "layers_total": rh.info.num_layers,
        },
        "source": {
            "run_dir": str(run_dir.resolve()),
            "id": e["id"],
            "rule": rule,
            "refined": bool(e.get("refined")),
        },
        "scores": {
            "metric": "/".join(rh.task.metrics),
            "search_val": e["score"],
            "validation_search": e.get("validation"),
            "validation_search_tokenisation": gate[0]["validation_search_tokenisation"],
            "validation_torch": gate[0]["validation_torch"],
            **{f"validation_{g['variant']}": g["validation"] for g in gate},
        },
        "flops": e["flops"],
        "latency_ms": e["latency_ms"],
        "params": e["params"],
        "opset": OPSET,
        "variants": variants,
        "parity": gate,
        "versions": package_versions(),
    }


def export_run(cfg: ExportConfig, log: Log = print) -> dict[str, Any]:
    """Export the chosen head of ``cfg.run_dir`` into ``cfg.out``; return the manifest.

    Raises:
        MooheadError: bad input, or a variant failing the parity gate (ParityError).
    """
    cfg.validate()
    entry, rule = chosen_entry(cfg.run_dir, cfg)
    log(f"exporting head {entry['id']} ({rule}): {entry.get('summary', '')}")
    rh = load_run_head(cfg.run_dir, entry)
    splits = _validation_splits(rh, cfg.data_dir)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.out.name}.", suffix=".tmp", dir=cfg.out.parent))
    try:
        rh.tokenizer.save_pretrained(str(tmp))
        if not (tmp / TOKENIZER_FILE).is_file():
            raise MooheadError(
                f"the encoder's tokenizer has no fast version ({TOKENIZER_FILE}); the ONNX "
                "runtime needs one: use an encoder with a fast tokenizer"
            )
        fp32 = tmp / VARIANT_FILES["fp32"]
        export_onnx(rh.model, fp32)
        encoder = Encoder(
            tmp / TOKENIZER_FILE,
            rh.max_length,
            rh.model.side_names,
            rh.task.is_pair,
            rh.model.siamese,
        )
        validation = ValidationRun.build(
            rh.model, rh.task, splits, encoder, rh.tokenizer, rh.entry.get("validation")
        )
        gate: list[dict[str, Any]] = []
        variants: dict[str, Any] = {}

        def check(name: str, path: Path, providers: list[str] | None = None) -> None:
            session = make_session(path, providers or ["CPUExecutionProvider"])
            result = validate_onnx(rh.model, session, name, validation, cfg)
            gate.append(result)
            variants[name] = file_record(path) | {"gated_on": result["provider"]}
            agree = result["label_agreement"]
            log(
                f"  {name:<9} max |diff| {result['max_abs_diff']:.1e}  validation "
                f"{result['validation']:.4f} (PyTorch {result['validation_torch']:.4f})"
                + ("" if agree is None else f"  labels agree {100 * agree:.2f}%")
                + f"  on {result['provider']}  ok"
            )

        check("fp32", fp32)
        enc_cfg = rh.model.encoder.config
        heads, hidden = int(enc_cfg.num_attention_heads), int(enc_cfg.hidden_size)
        if cfg.optimize:
            path = tmp / VARIANT_FILES["optimized"]
            fused = optimize_graph(fp32, path, heads, hidden)
            check("optimized", path)
            variants["optimized"]["fused_ops"] = fused
        if cfg.quantize == "int8":
            src = tmp / VARIANT_FILES["optimized"] if cfg.optimize else fp32
            path = tmp / VARIANT_FILES["int8"]
            quantize_int8(src, path)
            check("int8", path)
            variants["int8"]["from"] = "optimized" if cfg.optimize else "fp32"
        if cfg.fp16:
            path = tmp / VARIANT_FILES["fp16"]
            optimize_graph(fp32, path, heads, hidden, fp16=True)
            check("fp16", path, providers_for("auto"))
        doc = manifest(rh, rule, variants, gate, cfg.run_dir)
        doc["aliases"] = write_hf_layout(tmp, rh, variants)  # config.json, onnx/ for HF tools
        atomic_write_json(tmp / MANIFEST, doc)
        _move_into_place(tmp, cfg.out, cfg.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if cfg.triton_model is not None:  # only once the model passed the gate
        model_file = cfg.out / VARIANT_FILES[cfg.triton_variant]
        write_triton_model(model_file, cfg.triton_model, cfg.triton_max_batch_size, cfg.overwrite)
    return doc


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``out``; an old ``out`` goes only after that worked."""
    if not out.exists():
        tmp.rename(out)
        return
    if not overwrite:  # checked up front too; the folder may have appeared since
        raise MooheadError(f"{out} already exists; choose another --out or pass --overwrite")
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
