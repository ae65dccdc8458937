from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_packaged_encoder, save_tiny_encoder

from moohead.encoder import load_encoder, truncate
from moohead.fused import FusedModel, reference_inputs
from moohead.genome import Genome, baseline
from moohead.heads import build_head
from moohead.measure import count_flops, measure_latency, measure_latency_interleaved


def _fused(folder: str, genome: Genome, attn: str | None = None) -> FusedModel:
    from transformers import AutoModel

    model, _, info = load_encoder(folder)
    if attn is not None:
        model = AutoModel.from_pretrained(folder, attn_implementation=attn).eval()
    return FusedModel(
        truncate(model, genome.depth),
        build_head(genome, info.hidden_size, 2).eval(),
        info.uses_token_type_ids,
    )


def _flop_counter_mode(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    return int(counter.get_total_flops())


@pytest.mark.parametrize("length", [16, 64])
def test_fvcore_with_attention_handles_agrees_with_flop_counter_mode(
    tmp_path: Path, length: int
) -> None:
    """fvcore on the SDPA model (with our handles) vs FlopCounterMode on the eager one.

    Eager attention is two bmm's that FlopCounterMode counts, so agreement shows that
    the attention handle counts what it should; the rest (softmax, GELU, LayerNorm) is
    small next to the matmuls.
    """
    folder = str(save_tiny_encoder(tmp_path / "enc", hidden_size=64, intermediate_size=128))
    genome = baseline(2)
    sdpa = _fused(folder, genome, attn="sdpa")
    eager = _fused(folder, genome, attn="eager")
    inputs = reference_inputs(sdpa, 1, length)
    ours, reference = count_flops(sdpa, inputs), _flop_counter_mode(eager, inputs)
    assert abs(ours - reference) / reference < 0.05
    # And attention is really counted: without the handle fvcore would miss the T^2 term.
    from moohead import measure

    handles = dict(measure.EXTRA_HANDLES)
    try:
        del measure.EXTRA_HANDLES["aten::scaled_dot_product_attention"]
        missing = count_flops(sdpa, inputs)
    finally:
        measure.EXTRA_HANDLES.clear()
        measure.EXTRA_HANDLES.update(handles)
    attention = 2 * 2 * 2 * length * length * 64  # 2 layers x (QK^T + AV) x 2 FLOPs per MAC
    assert ours - missing == attention


def test_flops_grow_with_depth_and_heads(tiny_encoder_dir: Path) -> None:
    folder = str(tiny_encoder_dir)
    shallow = _fused(folder, Genome(depth=1))
    deep = _fused(folder, Genome(depth=2))
    mixed = _fused(folder, Genome(depth=2, mixer="attention", pool="attention"))
    flops = [count_flops(m, reference_inputs(m, 1, 32)) for m in (shallow, deep, mixed)]
    assert flops[0] < flops[1] < flops[2]


def test_siamese_fused_model_reads_both_sentences(tiny_encoder_dir: Path) -> None:
    model = _fused(str(tiny_encoder_dir), Genome(depth=2, pair="siamese", pool="mean"))
    assert model.input_names[-1] == "token_type_ids_b"
    inputs = reference_inputs(model, 2, 32)
    assert len(inputs) == 6 and inputs[0].shape == (2, 16)  # each side gets half the reference
    assert model(*inputs).shape == (2, 2)
    assert count_flops(model, inputs) > 0


def test_latency_is_a_positive_median(tiny_encoder_dir: Path) -> None:
    a = _fused(str(tiny_encoder_dir), Genome(depth=1))
    b = _fused(str(tiny_encoder_dir), Genome(depth=2))
    x = reference_inputs(a, 1, 16)
    assert measure_latency(a, x, warmup=1, runs=3) > 0
    assert all(v > 0 for v in measure_latency_interleaved([a, b], [x, x], warmup=1, runs=3))


def test_ort_latency_times_the_exported_graph(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ORT runtime times the graph export writes (same outputs as the model), one
    session per model, in groups that bound memory."""
    import moohead.measure
    from moohead.ort_latency import ort_calls, ort_session

    models = [_fused(str(tiny_encoder_dir), Genome(depth=d, pool="mean")) for d in (1, 2, 2, 1)]
    x = reference_inputs(models[0], 1, 16)
    session = ort_session(models[1], threads=1)
    # Sessions timed round-robin must not spin-wait (each would steal the next one's cores).
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    feeds = {n: t.numpy() for n, t in zip(models[1].input_names, x, strict=True)}
    with torch.inference_mode():
        expected = models[1](*x).numpy()
    np.testing.assert_allclose(session.run(None, feeds)[0], expected, atol=1e-5)
    assert np.array_equal(
        ort_calls(models[1:2], [x], threads=1)[0]()[0], session.run(None, feeds)[0]
    )
    groups: list[int] = []
    real = moohead.measure.time_interleaved
    monkeypatch.setattr(moohead.measure, "ORT_GROUP", 3)
    monkeypatch.setattr(
        moohead.measure,
        "time_interleaved",
        lambda calls, *a: groups.append(len(calls)) or real(calls, *a),  # type: ignore[func-returns-value]
    )
    ms = measure_latency_interleaved(models, [x] * 4, warmup=1, runs=3, runtime="ort", threads=1)
    assert len(ms) == 4 and all(v > 0 for v in ms) and groups == [3, 1]


@pytest.mark.integration
def test_minilm_flops_match_flop_counter_mode() -> None:
    require_packaged_encoder()
    from moohead.encoder import packaged_encoder_path

    folder = packaged_encoder_path()
    sdpa, eager = _fused(folder, baseline(6), "sdpa"), _fused(folder, baseline(6), "eager")
    inputs = reference_inputs(sdpa, 1, 128)
    ours, reference = count_flops(sdpa, inputs), _flop_counter_mode(eager, inputs)
    assert abs(ours - reference) / reference < 0.05
    assert 2.8e9 < ours < 3.0e9  # 6 layers of MiniLM at 128 tokens
