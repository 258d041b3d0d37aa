"""MFU: the data-sheet table looked up by CUDA device name, the measured-matmul fallback, the
arithmetic, and the figure the Trainer logs (all on a CPU; CUDA names come from fakes)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from minigpt.data import prepare
from minigpt.training import mfu
from minigpt.training.loop import Trainer
from minigpt.training.mfu import (
    PEAK_TFLOPS,
    Peak,
    device_peak,
    lookup_card,
    measure_matmul_peak,
    model_flops_utilisation,
    peak_column,
    table_peak_tflops,
)
from minigpt.training.settings import TrainConfig, build_model_for

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "name, column, tflops",
    [
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100 80GB PCIe", "tf32", 156.0),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.5),
        ("NVIDIA H100 PCIe", "tf32", 378.0),
        ("NVIDIA H100 NVL", "bf16", 835.5),
        ("NVIDIA H200", "bf16", 989.5),
        ("NVIDIA GH200 480GB", "fp32", 67.0),
        ("NVIDIA L4", "bf16", 121.0),  # not the L40S row
        ("NVIDIA L40S", "bf16", 362.05),
        ("NVIDIA A10", "tf32", 62.5),  # not the A100 row
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("NVIDIA GeForce RTX 3090", "fp32", 35.6),
        ("NVIDIA GeForce RTX 3090 Ti", "bf16", 80.0),
        ("Tesla V100-SXM2-16GB", "fp16", 125.0),
        ("Tesla V100-PCIE-32GB", "fp16", 112.0),
        ("Tesla V100S-PCIE-32GB", "fp16", 130.0),
        ("Tesla T4", "fp16", 65.0),
        ("Tesla T4", "bf16", 8.1),  # no bf16 units: emulated on the fp32 ones
        ("Tesla V100-SXM2-16GB", "tf32", 15.7),  # no TF32 on Volta
    ],
)
def test_the_table_is_looked_up_by_the_name_cuda_reports(name, column, tflops):
    assert table_peak_tflops(name, column) == tflops


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA RTX A6000", "AMD Instinct MI300X", ""])
def test_a_card_missing_from_the_table_has_no_figure(name):
    assert lookup_card(name) is None
    assert table_peak_tflops(name, "bf16") is None


def test_the_table_is_consistent():
    patterns = [card.pattern for card in PEAK_TFLOPS]
    assert len(set(patterns)) == len(patterns)
    for card in PEAK_TFLOPS:
        assert card.pattern == card.pattern.upper()  # names are matched upper-cased
        for value in (card.tf32, card.bf16, card.fp16):
            assert value is None or value >= card.fp32  # tensor cores never lose to fp32
        assert lookup_card(f"NVIDIA {card.pattern}") is card  # no earlier row shadows it
    with pytest.raises(ValueError, match="use one of fp32"):
        table_peak_tflops("NVIDIA H100", "int8")


def test_fp32_on_cuda_counts_as_tf32_only_when_tf32_is_on(monkeypatch):
    monkeypatch.setattr(mfu, "tf32_enabled", lambda: True)
    assert peak_column(CUDA, "fp32") == "tf32"
    assert peak_column(CPU, "fp32") == "fp32"  # CPUs have no TF32
    assert peak_column(CUDA, "bf16") == "bf16"
    monkeypatch.setattr(mfu, "tf32_enabled", lambda: False)
    assert peak_column(CUDA, "fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown"):
        peak_column(CPU, "fp8")


def test_a_known_gpu_gets_its_data_sheet_and_an_unknown_one_a_measurement(monkeypatch):
    measured = []

    def fake_measure(device, column, size=None, repeats=5):
        measured.append((device.type, column, size))
        return 42e12

    monkeypatch.setattr(mfu, "measure_matmul_peak", fake_measure)
    monkeypatch.setattr(mfu, "tf32_enabled", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-PCIE-40GB")
    assert device_peak(CUDA, "bf16") == Peak(312e12, "bf16", "data sheet: NVIDIA A100-PCIE-40GB")
    assert device_peak(CUDA, "fp32").flops == 156e12  # TF32 on
    assert measured == []  # the table answered
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A10G")
    peak = device_peak(CUDA, "bf16")
    assert measured == [("cuda", "bf16", 4096)] and peak.flops == 42e12
    assert peak.source.startswith("measured") and "TFLOPS bf16" in peak.describe()


def test_the_fallback_measures_a_square_matmul_and_keeps_the_global_rng(monkeypatch):
    ticks = iter(range(1000))  # a clock where every matmul takes exactly half a second
    monkeypatch.setattr(mfu, "time", SimpleNamespace(perf_counter=lambda: 0.5 * next(ticks)))
    state = torch.get_rng_state()
    assert measure_matmul_peak(CPU, "fp32", size=64, repeats=3) == 2 * 64**3 / 0.5
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="unknown"):
        measure_matmul_peak(CPU, "int4")


def test_a_cpu_peak_is_measured_for_real_and_quickly():
    peak = device_peak(CPU, "fp32")
    assert peak.column == "fp32" and peak.source == "measured: 512 x 512 matmul on cpu"
    assert 1e8 < peak.flops < 1e14  # somewhere between a phone and a rack
    assert "GFLOPS" in peak.describe() or "TFLOPS" in peak.describe()


def test_mfu_arithmetic():
    # 1,000 tokens/s x 6 MFLOPs per token = 6 GFLOP/s, of a 10 GFLOP/s peak
    assert model_flops_utilisation(1000, 6e6, 1e10) == pytest.approx(0.6)
    assert model_flops_utilisation(1000, 6e6, 1e10, n_devices=2) == pytest.approx(0.3)
    for peak, n in ((0.0, 1), (1e10, 0)):
        with pytest.raises(ValueError, match="must be > 0"):
            model_flops_utilisation(1000, 6e6, peak, n)


def test_the_trainer_logs_mfu_from_the_models_flop_count(tmp_path, monkeypatch):
    from pydoc_data.topics import topics

    text = tmp_path / "docs.txt"
    text.write_text("\n".join(topics[k] for k in sorted(topics))[:6000], encoding="utf-8")
    data = prepare(text, tokenizer="char", out_dir=tmp_path / "data", progress=False)
    cfg = TrainConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, block_size=16, batch_size=4,
                      tokenizer="char", precision="fp32", device="cpu", progress=False,
                      max_steps=4, log_interval=2, eval_batches=1,
                      out_dir=str(tmp_path / "run"))  # fmt: skip
    monkeypatch.setattr(mfu, "measure_matmul_peak", lambda device, column, size=None: 1e9)
    torch.manual_seed(0)
    model = build_model_for(cfg, data.tokenizer)
    result = Trainer(model, cfg, data, data.tokenizer).train()
    expected = result["tokens_per_s"] * model.flops_per_token(16) / 1e9
    assert result["mfu"] == pytest.approx(expected)
    assert result["mfu_peak"] == "1.0 GFLOPS fp32 (measured: 512 x 512 matmul on cpu)"
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r["kind"] == "train"]
    assert len(logged) == 2
    for r in logged:
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * model.flops_per_token(16) / 1e9)
