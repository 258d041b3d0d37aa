"""Activation checkpointing: the same loss and gradients as the plain run (dropout on too: the
checkpoint restores the random state), each block really run twice, nothing recomputed without
gradients, and the switch reaching the model from TrainConfig and the CLI."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_float_close

from minigpt import cli
from minigpt.config import ModelConfig
from minigpt.data import prepare
from minigpt.models import DecoderLM, EncoderLM, Seq2SeqLM, set_activation_checkpointing
from minigpt.training.loop import Trainer
from minigpt.training.settings import TrainConfig, build_model_for

VOCAB, B, T = 40, 3, 12


def _config(dropout: float) -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, max_len=T, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                       dropout=dropout, pad_id=0, start_id=0)  # fmt: skip


def _batch(model_class: type) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randint(1, VOCAB, (B, T), generator=gen)  # no padding (pad_id 0)
    targets = torch.randint(1, VOCAB, (B, T), generator=gen)
    if model_class is EncoderLM:  # MLM: only some positions are predicted
        targets[torch.rand(B, T, generator=gen) > 0.3] = -100
    return inputs, targets


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    if isinstance(model, DecoderLM):
        return list(model.blocks)
    if isinstance(model, EncoderLM):
        return list(model.encoder.layers)
    return list(model.model.encoder.layers) + list(model.model.decoder.layers)


def _loss_grads_and_calls(model, inputs, targets):
    """Loss, every parameter's gradient, and how often each block ran, for one fwd + bwd."""
    calls = [0] * len(_blocks(model))
    hooks = [block.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, block in enumerate(_blocks(model))]  # fmt: skip
    torch.manual_seed(123)  # dropout draws from the global generator
    _, loss = model(inputs, targets)
    loss.backward()
    for hook in hooks:
        hook.remove()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, calls


@pytest.mark.parametrize("model_class", [DecoderLM, EncoderLM, Seq2SeqLM])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_checkpointed_blocks_give_the_plain_loss_and_gradients(model_class, dropout):
    torch.manual_seed(0)
    plain = model_class(_config(dropout)).train()
    recomputed = copy.deepcopy(plain)
    assert set_activation_checkpointing(recomputed) == (2 if model_class is Seq2SeqLM else 1)
    inputs, targets = _batch(model_class)
    loss, grads, calls = _loss_grads_and_calls(plain, inputs, targets)
    loss_ck, grads_ck, calls_ck = _loss_grads_and_calls(recomputed, inputs, targets)
    assert calls == [1] * len(calls)
    assert calls_ck == [2] * len(calls)  # forward, then once more inside backward
    assert_float_close(loss_ck, loss)
    assert grads_ck.keys() == grads.keys() and len(grads) == len(list(plain.parameters()))
    for name, grad in grads.items():
        assert_float_close(grads_ck[name], grad, msg=name)
    if dropout:  # dropout really was on: another seed gives another loss
        torch.manual_seed(321)
        assert not torch.equal(plain(inputs, targets)[1].detach(), loss)


def test_nothing_is_recomputed_without_gradients_and_the_switch_turns_off():
    torch.manual_seed(0)
    model = DecoderLM(_config(0.0)).eval()
    inputs, _ = _batch(DecoderLM)
    expected = model(inputs)[0]
    set_activation_checkpointing(model, True)
    calls = []
    model.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.no_grad():  # generation and evaluation: the plain blocks run
        assert_float_close(model(inputs)[0], expected)
    assert calls == [1]
    set_activation_checkpointing(model, False)
    assert not model.activation_checkpointing
    with pytest.raises(ValueError, match="no stack of blocks"):
        set_activation_checkpointing(torch.nn.Linear(2, 2))


def test_the_flag_reaches_the_model_through_the_cli_and_the_trainer(tmp_path, monkeypatch):
    import minigpt.training.run as run

    seen = {}

    def fake_run_training(cfg):
        seen["cfg"] = cfg
        return {"steps": 0, "tokens": 0, "seconds": 0.0, "tokens_per_s": 0.0, "mfu": None,
                "val_loss": 1.0, "val_bpb": None,
                "checkpoint": str(tmp_path / "ckpt.pt")}  # fmt: skip

    monkeypatch.setattr(run, "run_training", fake_run_training)
    assert cli.main(["train", "--activation-checkpointing", "--no-sample"]) == 0
    assert seen["cfg"].activation_checkpointing is True
    assert cli.main(["train", "--no-sample"]) == 0
    assert seen["cfg"].activation_checkpointing is False
    with pytest.raises(ValueError, match="activation_checkpointing"):
        TrainConfig(activation_checkpointing=True, parallel="pipeline")

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    data = prepare(text, tokenizer="char", out_dir=tmp_path / "data", progress=False)
    for on in (True, False):
        cfg = TrainConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, block_size=8,
                          tokenizer="char", device="cpu", progress=False,
                          activation_checkpointing=on, out_dir=str(tmp_path / "run"))  # fmt: skip
        trainer = Trainer(build_model_for(cfg, data.tokenizer), cfg, data, data.tokenizer)
        assert trainer.model.activation_checkpointing is on
