"""Prefetching: the same batches in the same order, the copies queued `ahead` batches early,
pinned memory and non_blocking copies asked for only on CUDA (fakes stand in for a GPU), and
the Trainer moving every micro-batch through it."""

from __future__ import annotations

import pytest
import torch

from minigpt.training import loop
from minigpt.training.prefetch import prefetch, to_device, uses_pinned_memory

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


class FakeTensor:
    """Records what a copy asks of it: pin_memory() and .to(device, non_blocking=...)."""

    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls, self.device = name, calls, CPU

    def pin_memory(self) -> FakeTensor:
        self.calls.append((self.name, "pin"))
        return self

    def to(self, device: torch.device, non_blocking: bool = False) -> str:
        self.calls.append((self.name, "to", device.type, non_blocking))
        return f"{self.name}@{device.type}"


def test_cuda_copies_are_pinned_and_asynchronous_and_cpu_copies_are_plain():
    calls: list = []
    batch = (FakeTensor("x", calls), FakeTensor("y", calls))
    assert to_device(batch, CUDA) == ("x@cuda", "y@cuda")
    assert calls == [("x", "pin"), ("x", "to", "cuda", True),
                     ("y", "pin"), ("y", "to", "cuda", True)]  # fmt: skip
    calls.clear()
    assert to_device(batch, CPU) == ("x@cpu", "y@cpu")
    assert calls == [("x", "to", "cpu", False), ("y", "to", "cpu", False)]  # no pin, blocking
    assert uses_pinned_memory(CUDA) and not uses_pinned_memory(CPU)
    assert not uses_pinned_memory(torch.device("mps"))


def test_prefetch_yields_the_same_batches_in_the_same_order():
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 50, (4, 8), generator=gen), torch.randn(4, generator=gen))
               for _ in range(5)]  # fmt: skip
    for ahead in (0, 1, 3, 10):
        got = list(prefetch(iter(batches), CPU, ahead=ahead))
        assert len(got) == len(batches)
        for (x, y), (gx, gy) in zip(batches, got, strict=True):
            assert torch.equal(gx, x) and torch.equal(gy, y)
            assert gx.dtype == x.dtype and gx.device == CPU


@pytest.mark.parametrize("ahead", [0, 1, 2])
def test_prefetch_queues_the_next_copies_before_handing_out_a_batch(ahead):
    calls: list = []

    def source():
        for i in range(4):
            calls.append(("draw", i))
            yield (FakeTensor(f"b{i}", calls),)

    stream = prefetch(source(), CUDA, ahead=ahead)
    for i in range(4):
        assert next(stream) == (f"b{i}@cuda",)
        copied = [c[0] for c in calls if c[1] == "to"]
        assert copied == [f"b{j}" for j in range(min(4, i + 1 + ahead))]  # `ahead` in flight
        assert all(c[3] is True for c in calls if c[1] == "to")
    assert next(stream, None) is None
    with pytest.raises(ValueError, match="ahead=-1"):
        next(prefetch([], CPU, ahead=-1))


def test_the_trainer_moves_every_micro_batch_through_to_device(tmp_path, monkeypatch):
    from pydoc_data.topics import topics

    from minigpt.data import prepare
    from minigpt.training.settings import TrainConfig, build_model_for

    text = tmp_path / "docs.txt"
    text.write_text("\n".join(topics[k] for k in sorted(topics))[:6000], encoding="utf-8")
    data = prepare(text, tokenizer="char", out_dir=tmp_path / "data", progress=False)
    cfg = TrainConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, block_size=8, batch_size=2,
                      grad_accum=3, tokenizer="char", precision="fp32", device="cpu",
                      progress=False, out_dir=str(tmp_path / "run"))  # fmt: skip
    moved = []

    def spy(batch, device):
        moved.append((tuple(t.shape for t in batch), device.type))
        return to_device(batch, device)

    monkeypatch.setattr(loop, "to_device", spy)
    trainer = loop.Trainer(build_model_for(cfg, data.tokenizer), cfg, data, data.tokenizer)
    trainer._resolve_precision()
    for _ in range(2):
        trainer._train_one_step(None)
    assert moved == [(((2, 8), (2, 8)), "cpu")] * 6  # 2 steps x 3 micro-batches


# ----------------------------------------------------------------------------- the other CUDA
# switches of the fast path, checked without a GPU (fakes stand in for the card)


def test_tf32_is_switched_on_for_cuda_runs_only():
    from minigpt.training.precision import enable_tf32

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32  # process-wide flags: put back afterwards
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        enable_tf32(CPU)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32  # a CPU run keeps full fp32
        enable_tf32(CUDA)
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_auto_precision_takes_bf16_only_on_cards_with_bf16_tensor_cores(monkeypatch):
    from minigpt.training.precision import resolve_precision

    monkeypatch.setattr(torch.version, "hip", None)
    for capability, expected in (((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                 ((9, 0), "bf16")):  # fmt: skip  V100, T4, A100, H100
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert resolve_precision("auto", CUDA) == expected


def test_fused_adamw_is_asked_for_on_cuda():
    from minigpt.training.optim import fused_adamw

    assert fused_adamw(CUDA) is True


def test_compile_hands_the_model_to_torch_compile_and_the_steps_use_it(tmp_path, monkeypatch):
    from pydoc_data.topics import topics

    from minigpt.data import prepare
    from minigpt.training.settings import TrainConfig, build_model_for

    text = tmp_path / "docs.txt"
    text.write_text("\n".join(topics[k] for k in sorted(topics))[:4000], encoding="utf-8")
    data = prepare(text, tokenizer="char", out_dir=tmp_path / "data", progress=False)
    compiled, tf32_devices = [], []

    class Compiled(torch.nn.Module):  # what torch.compile would return: a wrapper module
        def __init__(self, model):
            super().__init__()
            self.inner, self.calls = model, 0

        def forward(self, *args):
            self.calls += 1
            return self.inner(*args)

    def fake_compile(model, **kwargs):
        compiled.append(model)
        return Compiled(model)

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(loop, "enable_tf32", tf32_devices.append)
    for on in (False, True):
        cfg = TrainConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, block_size=8, batch_size=2,
                          tokenizer="char", precision="fp32", device="cpu", compile=on,
                          progress=False, out_dir=str(tmp_path / "run"))  # fmt: skip
        model = build_model_for(cfg, data.tokenizer)
        trainer = loop.Trainer(model, cfg, data, data.tokenizer)
        trainer._resolve_precision()
        trainer._train_one_step(None)
        if on:
            assert compiled == [model] and trainer.train_model.calls == 1
        else:
            assert compiled == [] and trainer.train_model is model
    assert tf32_devices == [CPU, CPU]  # the one place TF32 is set is asked for every run
