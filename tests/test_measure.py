from pathlib import Path

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
