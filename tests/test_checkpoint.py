"""Checkpoints: one safe file, written atomically, with exact RNG round trips and clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from minigpt.config import ModelConfig
from minigpt.models import DecoderLM
from minigpt.tokenizer import DEFAULT_SPECIAL_TOKENS, CharTokenizer
from minigpt.training import checkpoint as ckpt_mod
from minigpt.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    load_model_for_inference,
    restore_rng_state,
    save_checkpoint,
)

TEXT = "the quick brown fox jumps over the lazy dog. " * 4


@pytest.fixture
def parts():
    torch.manual_seed(0)
    tok = CharTokenizer.train(TEXT, special_tokens=DEFAULT_SPECIAL_TOKENS)
    config = ModelConfig(
        vocab_size=tok.vocab_size, max_len=16, d_model=32, n_heads=2, n_layers=2, d_ff=64
    )
    model = DecoderLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, tok.vocab_size, (2, 9))
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    opt.step()  # so the optimizer has state (moments) worth saving
    return model, opt, tok


def _save(path, model, opt, tok, step=3):
    return save_checkpoint(
        path,
        model=model,
        model_config=model.config.to_dict(),
        tokenizer=tok,
        optimizer=opt,
        step=step,
        tokens_seen=step * 16,
        train_config={"objective": "clm", "seed": 1},
        rng_state=capture_rng_state(torch.Generator().manual_seed(5)),
        extra={"last_eval": {"val_loss": 1.5}},
    )


def test_round_trip_is_complete_and_weights_only(tmp_path, parts):
    model, opt, tok = parts
    path = _save(tmp_path / "ckpt.pt", model, opt, tok)
    raw = torch.load(path, weights_only=True)  # the safe loader accepts every stored object
    assert raw["format"] == "minigpt-checkpoint" and raw["model_class"] == "DecoderLM"
    ck = load_checkpoint(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(ck["model_state"][name], tensor), name
    assert ck["step"] == 3 and ck["tokens_seen"] == 48
    assert ck["tokenizer"] == tok.to_dict()
    assert ck["model_config"] == model.config.to_dict()
    assert ck["extra"]["last_eval"]["val_loss"] == 1.5
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck["optimizer"])
    state = next(iter(opt2.state.values()))
    assert torch.equal(state["exp_avg"], next(iter(opt.state.values()))["exp_avg"])


def test_rng_states_restore_exactly():
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = capture_rng_state(gen)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    restore_rng_state(state, gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert torch.equal(first[3], again[3])


def test_failed_write_keeps_the_last_good_checkpoint(tmp_path, parts, monkeypatch):
    model, opt, tok = parts
    path = _save(tmp_path / "ckpt.pt", model, opt, tok, step=3)
    good = path.read_bytes()

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")  # some bytes reach the temp file ...
        raise OSError("disk full")  # ... then the write dies

    monkeypatch.setattr(ckpt_mod.torch, "save", crash_midway)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        _save(path, model, opt, tok, step=4)
    assert path.read_bytes() == good
    assert load_checkpoint(path)["step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ValueError)
    return message


KINDS = ["missing", "folder", "garbage", "truncated", "foreign", "version"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_files_give_one_line_errors(tmp_path, parts, kind):
    model, opt, tok = parts
    path = tmp_path / "ckpt.pt"
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint at all")
    elif kind == "truncated":
        full = _save(tmp_path / "full.pt", model, opt, tok).read_bytes()
        path.write_bytes(full[: len(full) // 2])
    elif kind == "foreign":
        torch.save({"weights": torch.ones(2)}, path)
    elif kind == "version":
        _save(path, model, opt, tok)
        raw = torch.load(path, weights_only=True)
        raw["version"] = 99
        torch.save(raw, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in _one_line(err)


def test_load_model_for_inference_rebuilds_model_and_tokenizer(tmp_path, parts):
    model, opt, tok = parts
    path = _save(tmp_path / "ckpt.pt", model, opt, tok)
    loaded, tok2, meta = load_model_for_inference(path, device="cpu")
    assert isinstance(loaded, DecoderLM) and not loaded.training
    assert tok2.encode("lazy fox") == tok.encode("lazy fox")
    assert meta["step"] == 3 and meta["objective"] == "clm"
    x = torch.randint(0, tok.vocab_size, (2, 8))
    model.eval()
    assert torch.equal(loaded(x)[0], model(x)[0])


def test_mismatched_weights_and_unknown_class(tmp_path, parts):
    model, opt, tok = parts
    path = _save(tmp_path / "ckpt.pt", model, opt, tok)
    raw = torch.load(path, weights_only=True)
    raw["model_config"]["d_ff"] = 128  # config no longer matches the stored weights
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="do not fit") as err:
        load_model_for_inference(path, device="cpu")
    _one_line(err)
    raw["model_class"] = "ResNet"  # a family minigpt.models does not have
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="unknown model class 'ResNet'") as err:
        load_checkpoint(path)
    assert str(path) in _one_line(err)


def test_checkpoints_with_old_parameter_names_still_load(tmp_path, parts, monkeypatch):
    """Loading maps renamed parameters through minigpt.models.upgrade_state_dict, for the
    weights to use and for the raw training weights alike."""
    model, opt, tok = parts
    path = save_checkpoint(tmp_path / "ckpt.pt", model=model, model_config=model.config.to_dict(),
                           tokenizer=tok, train_state=model.state_dict())  # fmt: skip
    raw = torch.load(path, weights_only=True)
    for key in ("model_state", "train_state"):  # as if written when the names had a prefix
        raw[key] = {f"old.{name}": t for name, t in raw[key].items()}
    torch.save(raw, path)
    calls = []

    def upgrade(model_class, state):
        calls.append(model_class)
        return {name.removeprefix("old."): t for name, t in state.items()}

    monkeypatch.setattr(ckpt_mod, "upgrade_state_dict", upgrade)
    ck = load_checkpoint(path)
    assert calls == ["DecoderLM", "DecoderLM"] and set(ck["train_state"]) == set(ck["model_state"])
    loaded, _, _ = load_model_for_inference(path, device="cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
