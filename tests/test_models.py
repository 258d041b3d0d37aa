"""Models: stacks equal to PyTorch's, the config's checks and presets, the three language models.

Stacks are compared with `nn.TransformerEncoder`, `nn.TransformerDecoder` and `nn.Transformer`
(weights copied, fp32, eval mode, outputs and gradients to 1e-5). The language models are
checked through invariants: the KV cache changes nothing, -100 targets are ignored, padding
is really masked, the decoder input is the target shifted right.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_float_close
from torch import nn

from minigpt.attention import causal_mask
from minigpt.config import PRESETS, ModelConfig
from minigpt.layers import load_pytorch_weights
from minigpt.models import (
    MODEL_CLASSES,
    Decoder,
    DecoderLM,
    Encoder,
    EncoderDecoder,
    EncoderLM,
    Seq2SeqLM,
    build_model,
    upgrade_state_dict,
)

V, D, H, FF, L = 61, 32, 4, 64, 2
PAD, START = 0, 1


def config(**kw) -> ModelConfig:
    base = dict(vocab_size=V, max_len=24, d_model=D, n_heads=H, n_layers=L, d_ff=FF)
    return ModelConfig(**{**base, **kw})


@torch.no_grad()
def randomize(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        if "norm" in name and name.endswith("weight"):
            p.copy_(0.5 + torch.rand(p.shape, generator=g))
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def keep_lengths(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (B, t), pads at the end


@torch.no_grad()
def copy_stack(ours: Encoder | Decoder, ref: nn.Module) -> None:
    for ours_layer, ref_layer in zip(ours.layers, ref.layers, strict=True):
        load_pytorch_weights(ours_layer, ref_layer)
    assert (ours.norm is None) == (ref.norm is None)
    if ours.norm is not None:
        ours.norm.load_state_dict(ref.norm.state_dict())


def backward_both(out: torch.Tensor, expected: torch.Tensor) -> None:
    weight = torch.randn_like(out)
    (out * weight).sum().backward()
    (expected * weight).sum().backward()


def leaf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.clone().requires_grad_(), x.clone().requires_grad_()


def final_norm(cfg: ModelConfig) -> nn.LayerNorm | None:
    return nn.LayerNorm(D) if cfg.norm_first else None


def pytorch_layer_kwargs(cfg: ModelConfig) -> dict:
    return dict(
        d_model=D, nhead=H, dim_feedforward=FF, dropout=0.1, activation=cfg.activation,
        norm_first=cfg.norm_first, batch_first=True,
    )  # fmt: skip


STACKS = pytest.mark.parametrize(
    "norm_first,activation", [(False, "relu"), (True, "gelu"), (False, "gelu"), (True, "relu")]
)


# ---------------------------------------------------------------- stacks vs PyTorch


@STACKS
def test_encoder_stack_matches_pytorch(norm_first: bool, activation: str) -> None:
    cfg = config(norm_first=norm_first, activation=activation)
    ours = Encoder(cfg).eval()
    layer = nn.TransformerEncoderLayer(**pytorch_layer_kwargs(cfg))
    ref = nn.TransformerEncoder(layer, L, norm=final_norm(cfg), enable_nested_tensor=False)
    randomize(ref)
    copy_stack(ours, ref.eval())
    x_ours, x_ref = leaf(torch.randn(3, 6, D))
    keep = keep_lengths([6, 4, 1], 6)
    out = ours.run_layers(x_ours, keep[:, None, None, :])
    expected = ref(x_ref, src_key_padding_mask=~keep)
    assert_float_close(out, expected)
    backward_both(out, expected)
    assert_float_close(x_ours.grad, x_ref.grad)
    assert_float_close(
        ours.layers[0].ffn.fc2.weight.grad, ref.layers[0].linear2.weight.grad)


@STACKS
def test_decoder_stack_matches_pytorch(norm_first: bool, activation: str) -> None:
    cfg = config(norm_first=norm_first, activation=activation)
    ours = Decoder(cfg).eval()
    layer = nn.TransformerDecoderLayer(**pytorch_layer_kwargs(cfg))
    ref = nn.TransformerDecoder(layer, L, norm=final_norm(cfg))
    randomize(ref)
    copy_stack(ours, ref.eval())
    x_ours, x_ref = leaf(torch.randn(3, 6, D))
    m_ours, m_ref = leaf(torch.randn(3, 5, D))
    mem_keep = keep_lengths([5, 3, 2], 5)
    out = ours.run_layers(x_ours, m_ours, memory_mask=mem_keep[:, None, None, :])
    expected = ref(
        x_ref,
        m_ref,
        tgt_mask=~causal_mask(6),
        memory_key_padding_mask=~mem_keep,
        tgt_is_causal=True,
    )
    assert_float_close(out, expected)
    backward_both(out, expected)
    assert_float_close(x_ours.grad, x_ref.grad)
    assert_float_close(m_ours.grad, m_ref.grad)
    w_ours = ours.layers[-1].cross_attn.v_proj.weight.grad
    w_ref = ref.layers[-1].multihead_attn.in_proj_weight.grad[2 * D :]
    assert_float_close(w_ours, w_ref)


@STACKS
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_encoder_decoder_matches_nn_transformer(norm_first: bool, activation: str) -> None:
    cfg = config(norm_first=norm_first, activation=activation)
    ours = EncoderDecoder(cfg).eval()
    kw = pytorch_layer_kwargs(cfg)
    kw.pop("nhead"), kw.pop("d_model")
    ref = nn.Transformer(D, H, num_encoder_layers=L, num_decoder_layers=L, **kw)
    if not norm_first:  # the original post-norm model has no final norms; PyTorch adds them
        ref.encoder.norm = ref.decoder.norm = None
    randomize(ref)
    ref.eval()
    copy_stack(ours.encoder, ref.encoder)
    copy_stack(ours.decoder, ref.decoder)
    src_ours, src_ref = leaf(torch.randn(2, 5, D))
    tgt_ours, tgt_ref = leaf(torch.randn(2, 4, D))
    keep = keep_lengths([5, 3], 5)
    out = ours.run_layers(src_ours, tgt_ours, keep[:, None, None, :])
    expected = ref(
        src_ref, tgt_ref, tgt_mask=~causal_mask(4), src_key_padding_mask=~keep,
        memory_key_padding_mask=~keep,
    )  # fmt: skip
    assert_float_close(out, expected)
    backward_both(out, expected)
    assert_float_close(src_ours.grad, src_ref.grad)
    assert_float_close(tgt_ours.grad, tgt_ref.grad)


def test_encoder_decoder_ids_forward_shares_one_embedding() -> None:
    model = EncoderDecoder(config())
    assert model.encoder.embedding is model.decoder.embedding
    src, tgt = torch.randint(0, V, (2, 5)), torch.randint(0, V, (2, 3))
    assert model(src, tgt).shape == (2, 3, D)


# ---------------------------------------------------------------- config and presets


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(d_model=30, n_heads=4), "not divisible by n_heads=4"),
        (dict(n_layers=0), "n_layers=0 must be a positive integer"),
        (dict(vocab_size=-5), "vocab_size=-5"),
        (dict(d_ff=2.5), "d_ff=2.5"),
        (dict(activation="swish"), "activation='swish' is unknown"),
        (dict(positional="alibi"), "positional='alibi' is unknown"),
        (dict(positional="rope", d_model=36, n_heads=4), "head size d_model / n_heads = 9"),
        (dict(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
        (dict(dropout=-0.1), "dropout=-0.1"),
        (dict(pad_id=V), f"pad_id={V} is outside the vocabulary"),
        (dict(n_encoder_layers=0), "n_encoder_layers=0"),
    ],
)
def test_config_validation_names_the_value(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**kw)


def test_config_round_trip_and_presets() -> None:
    cfg = config(pad_id=PAD, start_id=START, n_decoder_layers=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.encoder_layers == L and cfg.decoder_layers == 3
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_embd": 3})
    with pytest.raises(ValueError, match="choose one of: tiny, small, homework, gpt2-small"):
        ModelConfig.from_preset("huge")
    tiny = ModelConfig.from_preset("tiny", vocab_size=500, dropout=0.1)
    assert (
        tiny.vocab_size == 500
        and tiny.dropout == 0.1
        and tiny.d_model == PRESETS["tiny"]["d_model"]
    )


def preset_model(name: str) -> DecoderLM:
    with torch.device("meta"):  # shapes only: no memory, no time
        return DecoderLM(ModelConfig.from_preset(name))


def test_preset_parameter_counts() -> None:
    # GPT-2 small: 124,439,808 parameters (tied head, learned positions) as published.
    assert preset_model("gpt2-small").num_parameters() == 124_439_808
    assert abs(preset_model("homework").num_parameters() - 35e6) / 35e6 < 0.05
    small = preset_model("small")
    assert (small.config.n_layers, small.config.d_model, small.config.n_heads) == (6, 384, 6)
    assert small.config.max_len == 256
    tiny = preset_model("tiny")
    assert 1e6 < tiny.num_parameters() < 10e6


# ---------------------------------------------------------------- DecoderLM


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(positional="learned", norm_first=False),
        dict(tie_weights=False),
        dict(positional="rope", activation="relu"),
    ],
)
def test_decoder_lm_cache_gives_full_forward_logits(kw: dict) -> None:
    torch.manual_seed(0)
    model = DecoderLM(config(**kw)).eval()
    idx = torch.randint(0, V, (2, 12))
    full, _ = model(idx)
    cache = model.new_cache()
    parts = [model(idx[:, :5], cache=cache)[0]]
    parts += [model(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 12)]
    assert_float_close(torch.cat(parts, dim=1), full)


def test_decoder_lm_is_causal_and_loss_ignores_minus_100() -> None:
    torch.manual_seed(1)
    model = DecoderLM(config()).eval()
    idx = torch.randint(0, V, (2, 10))
    logits, loss = model(idx)
    assert logits.shape == (2, 10, V) and loss is None
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % V
    assert_float_close(model(changed)[0][:, :6], logits[:, :6])

    targets = torch.randint(0, V, (2, 10))
    targets[0, :4] = -100
    _, loss = model(idx, targets)
    keep = targets != -100
    expected = nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)
    # At initialisation every token is about equally likely: loss ~ ln(vocab).
    assert abs(loss.item() - math.log(V)) < 0.5


def test_weight_tying_and_parameter_counts() -> None:
    tied, untied = DecoderLM(config()), DecoderLM(config(tie_weights=False))
    assert tied.lm_head.weight is tied.embedding.token.weight
    assert untied.lm_head.weight is not untied.embedding.token.weight
    assert untied.num_parameters() - tied.num_parameters() == V * D
    # Non-embedding N (Kaplan et al.) is the same whether or not the head is tied.
    assert tied.num_parameters(exclude_embeddings=True) == untied.num_parameters(True)
    per_layer = 4 * (D * D + D) + (D * FF + FF + FF * D + D) + 2 * 2 * D
    assert tied.num_parameters(exclude_embeddings=True) == L * per_layer + 2 * D
    # flops_per_token = 6 N + 6 n_layers T d_model, with the output matmul counted in N
    n = L * per_layer + 2 * D + V * D
    assert tied.flops_per_token() == 6 * n + 6 * L * 24 * D
    assert tied.flops_per_token(seq_len=8) == 6 * n + 6 * L * 8 * D
    # Tied gradients flow into the one shared matrix from both of its uses.
    _, loss = tied(torch.randint(0, V, (2, 5)), torch.randint(0, V, (2, 5)))
    loss.backward()
    assert tied.embedding.token.weight.grad is not None


def test_initialisation_follows_gpt2() -> None:
    cfg = config(d_model=128, n_heads=4, d_ff=512, n_layers=8)
    model = DecoderLM(cfg)
    layer = model.blocks[3]
    assert abs(layer.self_attn.q_proj.weight.std().item() - 0.02) < 0.002
    residual = 0.02 / math.sqrt(2 * 8)
    assert abs(layer.ffn.fc2.weight.std().item() - residual) < 0.1 * residual
    assert abs(layer.self_attn.out_proj.weight.std().item() - residual) < 0.1 * residual
    assert torch.all(layer.ffn.fc1.bias == 0) and torch.all(layer.norm1.weight == 1)


def test_decoder_lm_learns() -> None:
    torch.manual_seed(2)
    model = DecoderLM(config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = torch.arange(13).repeat(2, 1) % V  # a fixed sequence: memorisable
    for _ in range(40):
        _, loss = model(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.4 * math.log(V)  # from ~ln(V) = 4.1 nats at initialisation


# ---------------------------------------------------------------- EncoderLM


def test_encoder_lm_masks_padding() -> None:
    torch.manual_seed(3)
    model = EncoderLM(config(pad_id=PAD)).eval()
    inputs = torch.randint(2, V, (2, 8))
    inputs[1, 5:] = PAD
    targets = torch.full_like(inputs, -100)
    targets[0, 2], targets[1, 1] = 7, 9
    logits, loss = model(inputs, targets)
    assert logits.shape == (2, 8, V) and loss.ndim == 0
    expected = nn.functional.cross_entropy(logits[targets != -100], targets[targets != -100])
    torch.testing.assert_close(loss, expected)
    # Bidirectional: the first position sees the last one.
    changed = inputs.clone()
    changed[0, 7] = (changed[0, 7] + 1) % V
    assert not torch.allclose(model(changed)[0][0, 0], logits[0, 0])
    # Padding keys are masked: row 1's real tokens come out as if the pads were not there.
    alone = model(inputs[1:, :5])[0][0]
    assert_float_close(logits[1, :5], alone)
    # The same weights without pad_id let the pads leak in.
    no_pad_model = EncoderLM(config()).eval()
    no_pad_model.load_state_dict(model.state_dict())
    assert not torch.allclose(no_pad_model(inputs)[0][1, :5], alone, atol=1e-3)


# ---------------------------------------------------------------- Seq2SeqLM


def test_seq2seq_needs_pad_and_start() -> None:
    with pytest.raises(ValueError, match="config.pad_id"):
        Seq2SeqLM(config(start_id=START))
    with pytest.raises(ValueError, match="config.start_id"):
        Seq2SeqLM(config(pad_id=PAD))
    with pytest.raises(ValueError, match="needs targets"):
        Seq2SeqLM(config(pad_id=PAD, start_id=START))(torch.ones(1, 3, dtype=torch.long))


def test_seq2seq_shift_right_and_loss() -> None:
    torch.manual_seed(4)
    model = Seq2SeqLM(config(pad_id=PAD, start_id=START)).eval()
    targets = torch.tensor([[5, 6, 7, -100, -100], [8, 9, 10, 11, 12]])
    shifted = model.shift_right(targets)
    assert shifted.tolist() == [[START, 5, 6, 7, PAD], [START, 8, 9, 10, 11]]
    inputs = torch.randint(2, V, (2, 6))
    logits, loss = model(inputs, targets)
    assert logits.shape == (2, 5, V)
    keep = targets != -100
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits[keep], targets[keep]))
    same, _ = model(inputs, decoder_inputs=shifted)
    torch.testing.assert_close(same, logits)
    # Teacher forcing is causal: logits at t do not depend on targets at t or later.
    changed = targets.clone()
    changed[:, 2] = 13
    assert_float_close(model(inputs, changed)[0][:, :3], logits[:, :3])


@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
def test_seq2seq_masks_encoder_padding_and_caches_decoding(positional: str) -> None:
    torch.manual_seed(5)
    model = Seq2SeqLM(config(pad_id=PAD, start_id=START, positional=positional)).eval()
    inputs = torch.randint(2, V, (2, 7))
    inputs[0, 4:] = PAD
    targets = torch.randint(2, V, (2, 6))
    logits, _ = model(inputs, targets)
    alone, _ = model(inputs[:1, :4], targets[:1])  # row 0 without its padding
    assert_float_close(logits[:1], alone)

    memory, mask = model.encode(inputs)
    assert memory.shape == (2, 7, D) and mask.shape == (2, 1, 1, 7)
    decoder_inputs = model.shift_right(targets)
    cache = model.new_cache()
    steps = [model.decode(decoder_inputs[:, t : t + 1], memory, mask, cache) for t in range(6)]
    assert_float_close(torch.cat(steps, dim=1), logits)


def test_seq2seq_flops_count_cross_attention() -> None:
    model = Seq2SeqLM(config(pad_id=PAD, start_id=START, n_encoder_layers=3, n_decoder_layers=1))
    assert len(model.model.encoder.layers) == 3 and len(model.model.decoder.layers) == 1
    n = model.num_parameters(exclude_embeddings=True) + V * D
    assert model.flops_per_token() == 6 * n + 6 * (3 + 2 * 1) * 24 * D


def test_decoder_lm_matches_a_gpt_built_from_pytorch_layers() -> None:
    """embed -> causal nn.TransformerEncoderLayers -> final norm -> tied head, in PyTorch's
    parts, with our weights copied in: the same logits and loss, and the same gradients."""
    cfg = config(dropout=0.0)
    ours = DecoderLM(cfg).eval()
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu",
                                       norm_first=True, batch_first=True)  # fmt: skip
    ref_layers = nn.TransformerEncoder(layer, L, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for ref_layer, block in zip(ref_layers.layers, ours.blocks, strict=True):
            ref_layer.self_attn.in_proj_weight.copy_(torch.cat(
                [block.self_attn.q_proj.weight, block.self_attn.k_proj.weight,
                 block.self_attn.v_proj.weight]))  # fmt: skip
            ref_layer.self_attn.in_proj_bias.copy_(torch.cat(
                [block.self_attn.q_proj.bias, block.self_attn.k_proj.bias,
                 block.self_attn.v_proj.bias]))  # fmt: skip
            ref_layer.self_attn.out_proj.load_state_dict(block.self_attn.out_proj.state_dict())
            ref_layer.linear1.load_state_dict(block.ffn.fc1.state_dict())
            ref_layer.linear2.load_state_dict(block.ffn.fc2.state_dict())
            ref_layer.norm1.load_state_dict(block.norm1.state_dict())
            ref_layer.norm2.load_state_dict(block.norm2.state_dict())
    idx = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(1))
    logits, loss = ours(idx, targets)
    table = ours.embedding.token.weight
    x = ours.embedding(idx)  # token vectors (scaled) + sinusoidal positions
    h = ref_layers(x, mask=~causal_mask(10), is_causal=True)
    ref_logits = nn.functional.layer_norm(h, (D,), ours.norm.weight, ours.norm.bias) @ table.T
    ref_loss = nn.functional.cross_entropy(ref_logits.reshape(-1, V), targets.reshape(-1))
    assert_float_close(logits, ref_logits)
    assert_float_close(loss, ref_loss)
    (grad_ours,) = torch.autograd.grad(loss, table)
    (grad_ref,) = torch.autograd.grad(ref_loss, table)
    assert_float_close(grad_ours, grad_ref)


def test_decoder_lm_owns_its_parts_at_the_top() -> None:
    """The pipeline cuts a GPT by its blocks: embedding, blocks, norm and head are top-level."""
    model = DecoderLM(config(n_layers=3))
    children = [name for name, _ in model.named_children()]
    assert children == ["embedding", "blocks", "norm", "lm_head"]
    assert len(model.blocks) == 3 and model.lm_head.weight is model.embedding.token.weight


def test_registry_builds_every_family_and_rejects_unknown_names() -> None:
    cfg = config(pad_id=PAD, start_id=START)
    for name, cls in MODEL_CLASSES.items():
        model = build_model(name, cfg.to_dict())
        assert type(model) is cls and model.config == cfg
    with pytest.raises(ValueError, match="unknown model class 'GPT5'.*DecoderLM"):
        build_model("GPT5", cfg)


def test_old_decoder_lm_parameter_names_are_upgraded() -> None:
    """Checkpoints from before the restructuring named the parts decoder.layers.i.norm3 etc."""
    model = DecoderLM(config(n_layers=2))
    new = model.state_dict()
    old = {}
    for key, value in new.items():
        if key.startswith("blocks."):
            old["decoder.layers." + key[len("blocks."):].replace(".norm2.", ".norm3.")] = value
        elif key != "lm_head.weight":
            old["decoder." + key] = value
        else:
            old[key] = value
    upgraded = upgrade_state_dict("DecoderLM", old)
    assert upgraded.keys() == new.keys()
    assert all(upgraded[k] is new[k] for k in new)
    assert upgrade_state_dict("DecoderLM", new) == dict(new)  # new names pass through
    assert upgrade_state_dict("Seq2SeqLM", {"model.decoder.norm.weight": 1}) == {
        "model.decoder.norm.weight": 1
    }


# --- GPT-2's published checkpoint layout -> DecoderLM.from_gpt2


def _gpt2_state(vocab=40, n_ctx=16, d=32, n_layers=2, prefix=""):
    """A state dict with GPT-2's exact key names and shapes (Conv1D weights are (in, out)),
    random values, small sizes; the causal-mask buffers old checkpoints carry included."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    state = {"wte.weight": r(vocab, d), "wpe.weight": r(n_ctx, d),
             "ln_f.weight": 1 + r(d), "ln_f.bias": r(d)}  # fmt: skip
    for i in range(n_layers):
        h = f"h.{i}."
        state.update({
            h + "ln_1.weight": 1 + r(d), h + "ln_1.bias": r(d),
            h + "attn.c_attn.weight": r(d, 3 * d), h + "attn.c_attn.bias": r(3 * d),
            h + "attn.c_proj.weight": r(d, d), h + "attn.c_proj.bias": r(d),
            h + "ln_2.weight": 1 + r(d), h + "ln_2.bias": r(d),
            h + "mlp.c_fc.weight": r(d, 4 * d), h + "mlp.c_fc.bias": r(4 * d),
            h + "mlp.c_proj.weight": r(4 * d, d), h + "mlp.c_proj.bias": r(d),
            h + "attn.bias": torch.tril(torch.ones(1, 1, n_ctx, n_ctx)),
        })  # fmt: skip
    return {prefix + k: v for k, v in state.items()}


def _gpt2_forward(state, ids, n_heads):
    """GPT-2's forward pass written directly on the checkpoint's tensors (x @ W + b)."""
    d = state["wte.weight"].size(1)
    x = state["wte.weight"][ids] + state["wpe.weight"][: ids.size(1)]
    t = ids.size(1)

    def ln(x, name):
        return nn.functional.layer_norm(x, (d,), state[name + ".weight"], state[name + ".bias"])

    def conv1d(x, name):
        return x @ state[name + ".weight"] + state[name + ".bias"]

    future = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
    n_layers = len({k.split(".")[1] for k in state if k.startswith("h.")})
    for i in range(n_layers):
        h = f"h.{i}."
        q, k, v = conv1d(ln(x, h + "ln_1"), h + "attn.c_attn").split(d, dim=-1)
        heads = [z.view(1, t, n_heads, d // n_heads).transpose(1, 2) for z in (q, k, v)]
        scores = heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(d // n_heads)
        att = scores.masked_fill(future, float("-inf")).softmax(-1) @ heads[2]
        x = x + conv1d(att.transpose(1, 2).reshape(1, t, d), h + "attn.c_proj")
        hidden = nn.functional.gelu(conv1d(ln(x, h + "ln_2"), h + "mlp.c_fc"), approximate="tanh")
        x = x + conv1d(hidden, h + "mlp.c_proj")
    return ln(x, "ln_f") @ state["wte.weight"].t()


def _write_safetensors(path, state):
    """The safetensors layout: 8-byte header length, JSON header, raw little-endian bytes."""
    import json
    import struct

    header, blobs, offset = {}, [], 0
    for name, tensor in state.items():
        raw = tensor.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}  # fmt: skip
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "model.safetensors", "prefixed"])
def test_from_gpt2_reproduces_a_forward_computed_from_the_checkpoint(tmp_path, layout):
    state = _gpt2_state()
    if layout == "model.safetensors":
        _write_safetensors(tmp_path / layout, state)
    else:  # saved from the LM-head model: "transformer." prefix plus the tied lm_head
        saved = state if layout == "pytorch_model.bin" else {
            **_gpt2_state(prefix="transformer."), "lm_head.weight": state["wte.weight"]}
        torch.save(saved, tmp_path / "pytorch_model.bin")
    model = DecoderLM.from_gpt2(tmp_path, n_heads=2).eval()
    c = model.config
    assert (c.vocab_size, c.max_len, c.d_model, c.n_layers, c.d_ff) == (40, 16, 32, 2, 128)
    assert c.activation == "gelu_tanh" and c.positional == "learned" and c.tie_weights
    assert not c.scale_embeddings and c.norm_first
    ids = torch.randint(0, 40, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, _ = model(ids)
        assert_float_close(logits, _gpt2_forward(state, ids, n_heads=2), ulps=256)
    assert model.lm_head.weight is model.embedding.token.weight


def test_from_gpt2_sizes_default_to_64_wide_heads_and_missing_files_say_where(tmp_path):
    torch.save(_gpt2_state(d=128), tmp_path / "pytorch_model.bin")
    assert DecoderLM.from_gpt2(tmp_path / "pytorch_model.bin").config.n_heads == 2
    with pytest.raises(FileNotFoundError, match="put model.safetensors or pytorch_model.bin"):
        DecoderLM.from_gpt2(tmp_path / "nowhere")
    torch.save({"wte.weight": torch.zeros(3, 4)}, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="not a GPT-2 checkpoint"):
        DecoderLM.from_gpt2(tmp_path / "bad.bin")
