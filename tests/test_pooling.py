"""The encoder's native sentence embedding, read from sentence-transformers' modules.json."""

import json
from pathlib import Path

import pytest
from conftest import require_packaged_encoder

from moohead.encoder import packaged_encoder_path
from moohead.errors import MooheadError
from moohead.pooling import DEFAULT, native_pooling

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
]
NORMALIZE = {
    "idx": 2,
    "name": "2",
    "path": "2_Normalize",
    "type": "sentence_transformers.models.Normalize",
}


def _folder(tmp_path: Path, modules: object, pooling: object | None) -> Path:
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return tmp_path


def _flags(*on: str) -> dict[str, object]:
    names = (
        "cls_token",
        "mean_tokens",
        "max_tokens",
        "mean_sqrt_len_tokens",
        "weightedmean_tokens",
    )
    sizes: dict[str, object] = {"word_embedding_dimension": 384}
    return sizes | {f"pooling_mode_{n}": n in on for n in names}


def test_the_packaged_minilm_is_a_normalised_mean() -> None:
    require_packaged_encoder()
    native = native_pooling(packaged_encoder_path())
    assert (native.pool, native.normalize) == ("mean", True)
    assert native.source.endswith("1_Pooling/config.json")


@pytest.mark.parametrize(
    ("flags", "pool"),
    [(("cls_token",), "cls"), (("max_tokens",), "max"), (("cls_token", "mean_tokens"), "cls+mean")],
)
def test_declared_pools(tmp_path: Path, flags: tuple[str, ...], pool: str) -> None:
    native = native_pooling(str(_folder(tmp_path, MODULES, _flags(*flags))))
    assert (native.pool, native.normalize) == (pool, False)


def test_without_modules_json_the_default_is_mean(tmp_path: Path) -> None:
    assert native_pooling(str(tmp_path)) == DEFAULT
    assert native_pooling(str(_folder(tmp_path, [NORMALIZE], None))).pool == "mean"


def test_a_pool_moohead_cannot_build_falls_back_to_mean_and_says_why(tmp_path: Path) -> None:
    native = native_pooling(
        str(_folder(tmp_path, [*MODULES, NORMALIZE], _flags("weightedmean_tokens")))
    )
    assert (native.pool, native.normalize) == ("mean", True)
    assert "pooling_mode_weightedmean_tokens" in native.source and "mean pooling" in native.source


def test_unreadable_configs_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[{not json")
    with pytest.raises(MooheadError, match=r"cannot read .*modules\.json \(") as exc:
        native_pooling(str(tmp_path))
    assert "\n" not in str(exc.value)
    _folder(tmp_path, MODULES, None)
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": tru')
    with pytest.raises(MooheadError, match=r"cannot read .*1_Pooling/config\.json"):
        native_pooling(str(tmp_path))
    (tmp_path / "1_Pooling" / "config.json").write_text("[1, 2]")
    with pytest.raises(MooheadError, match="expected a JSON object"):
        native_pooling(str(tmp_path))
    (tmp_path / "modules.json").write_text('{"a": 1}')
    with pytest.raises(MooheadError, match="expected a JSON list of modules"):
        native_pooling(str(tmp_path))


def test_a_pooling_module_without_its_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(MooheadError, match="names a Pooling module at '1_Pooling'"):
        native_pooling(str(_folder(tmp_path, MODULES, None)))
