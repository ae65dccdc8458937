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


@pytest.mark.parametrize("family", ["roberta", "distilbert", "electra"])
def test_other_bert_family_encoders(family: str, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """Truncation, feature caching and the fused model work beyond BERT."""
    import shutil

    import numpy as np
    from transformers import AutoConfig, AutoModel

    from moohead.data import Split
    from moohead.features import CacheConfig, PrepareContext, cached_split
    from moohead.fused import FusedModel, reference_inputs
    from moohead.genome import Genome
    from moohead.heads import build_head
    from moohead.tasks import GLUE_TASKS

    sizes = (
        {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37}
        if family == "distilbert"
        else {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
        }
    )
    folder = tmp_path / family
    shutil.copytree(
        tiny_encoder_dir, folder, ignore=shutil.ignore_patterns("config.json", "*.safetensors")
    )
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(family, vocab_size=99, **sizes)).save_pretrained(
        folder
    )
    model, tok, info = load_encoder(str(folder))
    assert (info.num_layers, info.hidden_size) == (2, 32)
    assert info.uses_token_type_ids == (family != "distilbert")
    x = tok(["the movie was good"], return_tensors="pt")
    if not info.uses_token_type_ids:
        x.pop("token_type_ids", None)
    with torch.no_grad():
        full = model(**x, output_hidden_states=True).hidden_states
        torch.testing.assert_close(truncate(model, 1)(**x).last_hidden_state, full[1])
    split = Split((["the movie was good", "bad"], ["a plot", "dull"]), np.array([1, 0]))
    feats = cached_split(
        PrepareContext(model, tok, info, GLUE_TASKS["rte"], CacheConfig(tmp_path / "cache")),
        "train",
        split,
    )
    assert set(feats.views) == {"joint", "a", "b"}
    fused = FusedModel(
        truncate(model, 2),
        build_head(Genome(depth=2, pool="mean"), 32, 2),
        info.uses_token_type_ids,
    )
    assert fused(*reference_inputs(fused, 2, 12)).shape == (2, 2)


def test_unreachable_hub_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MooheadError, match="cannot load encoder 'bert-base-uncased'"):
        load_encoder("bert-base-uncased")
