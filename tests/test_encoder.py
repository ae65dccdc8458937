from pathlib import Path

import pytest
import torch
from conftest import require_packaged_encoder

from moohead.encoder import load_encoder, truncate
from moohead.errors import MooheadError


def test_truncation_keeps_exactly_the_first_layers(tiny_encoder_dir: Path) -> None:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    assert (info.num_layers, info.hidden_size, info.uses_token_type_ids) == (2, 32, True)
    x = tok(["the movie was good", "bad"], padding=True, return_tensors="pt")
    with torch.no_grad():
        full = model(**x, output_hidden_states=True).hidden_states
        for depth in (1, 2):
            cut = truncate(model, depth)
            assert len(cut.encoder.layer) == depth and cut.config.num_hidden_layers == depth
            out = cut(**x, output_hidden_states=True).hidden_states
            assert len(out) == depth + 1
            torch.testing.assert_close(out[-1], full[depth])
    assert len(model.encoder.layer) == 2  # the original is untouched


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(MooheadError, match="not a Hugging Face model folder"):
        load_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(MooheadError, match="cannot load encoder"):
        load_encoder(str(tmp_path))


@pytest.mark.integration
def test_packaged_minilm_is_the_default() -> None:
    require_packaged_encoder()
    model, tok, info = load_encoder(None)
    assert (info.name, info.num_layers, info.hidden_size) == ("all-MiniLM-L6-v2", 6, 384)
    with torch.no_grad():
        cut = truncate(model, 3)
        x = tok(["a real sentence"], return_tensors="pt")
        torch.testing.assert_close(
            cut(**x).last_hidden_state, model(**x, output_hidden_states=True).hidden_states[3]
        )
