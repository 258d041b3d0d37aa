"""`torchrun -m minigpt train --parallel MODE` on 2 CPU processes (gloo): equal to one process.

Every rank draws the same global batch and trains on its rows, so 2 ranks x 4 windows must give
the weights one process gives with 8 windows (to float rounding: the all-reduce sums in another
order). A run stopped after 3 steps and resumed must equal the straight run bit for bit. Each
launch has a timeout, and a free port, so a stuck rank fails the test instead of hanging CI.
Dropout is off (each rank draws masks for its own rows) and precision fp32 (what a CPU run of
several processes uses: every rank must choose the same, without timing probes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt.parallel.launch import free_port
from minigpt.training.checkpoint import load_checkpoint
from minigpt.training.run import run_training
from minigpt.training.settings import with_recipe

ROOT = Path(__file__).resolve().parent.parent
MODEL = dict(d_model=32, n_layers=2, n_heads=2, d_ff=64, block_size=16, dropout=0.0)
TRAIN = dict(precision="fp32", eval_interval=2, eval_batches=2, checkpoint_interval=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("corpus")
    text = "".join(f"line {i}: the teacher taught the student with the book.\n" for i in range(400))
    (folder / "text.txt").write_text(text, encoding="utf-8")
    return {"data": str(folder / "text.txt"), "data_dir": str(folder / "prepared")}


def flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        out += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return out


def torchrun(corpus: dict[str, str], out: Path, mode: str, **options: object) -> str:
    """Launch `minigpt train` as 2 processes; fail the test with the output if it fails."""
    options = {**MODEL, **TRAIN, "tokenizer": "char", **corpus, "batch_size": 4, **options}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "minigpt", "train", "--parallel", mode, "--out", str(out), "--no-sample",
           *flags(options)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, f"{mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def single_process(corpus: dict[str, str], out: Path, **options) -> dict[str, torch.Tensor]:
    """The same run in one process, its settings filled in as the CLI fills them in (flags, then
    the preset's recipe)."""
    cfg = with_recipe(**MODEL, **TRAIN, tokenizer="char", **corpus, batch_size=8,
                      out_dir=str(out), progress=False, **options)  # fmt: skip
    run_training(cfg)
    return load_checkpoint(out / "ckpt.pt")["model_state"]


def evaluations(metrics: Path) -> dict[int, float]:
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in records if r["kind"] == "eval"}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    eps = torch.finfo(torch.float32).eps
    for key in a:  # a few ulps of each tensor's scale: two sums in different orders
        scale = max(float(b[key].abs().max()), 1.0)
        torch.testing.assert_close(a[key], b[key], rtol=64 * eps, atol=64 * eps * scale, msg=key)


@pytest.mark.slow
def test_ddp_equals_one_process_and_resumes_exactly(corpus, tmp_path) -> None:
    reference = single_process(corpus, tmp_path / "single", max_steps=6)
    printed = torchrun(corpus, tmp_path / "straight", "ddp", max_steps=6)
    assert "global batch 8 windows = 4 x 1 accumulated x 2 ranks" in printed
    straight = load_checkpoint(tmp_path / "straight" / "ckpt.pt")
    assert_same_weights(straight["model_state"], reference)

    torchrun(corpus, tmp_path / "resumed", "ddp", max_steps=3)  # warm-up: lr depends on step only
    torchrun(corpus, tmp_path / "resumed", "ddp", max_steps=6, resume=True)
    resumed = load_checkpoint(tmp_path / "resumed" / "ckpt.pt")
    assert resumed["step"] == straight["step"] == 6
    for key, value in straight["model_state"].items():
        assert torch.equal(resumed["model_state"][key], value), key
    evals = [evaluations(tmp_path / run / "metrics.jsonl") for run in ("straight", "resumed")]
    assert evals[1] == {**evals[0], 3: evals[1][3]}  # + the first run's final one, at step 3


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["zero1", "torch-ddp", "fsdp"])
def test_every_mode_trains_like_one_process_through_a_resume(corpus, tmp_path, mode) -> None:
    """2 steps, stop, resume to 4: equal to 4 steps of one process with the doubled batch (an
    optimizer state lost or left sharded in the checkpoint would change the last 2 steps)."""
    reference = single_process(corpus, tmp_path / "single", max_steps=4, grad_accum=2)
    torchrun(corpus, tmp_path / "run", mode, max_steps=2, grad_accum=2)
    torchrun(corpus, tmp_path / "run", mode, max_steps=4, grad_accum=2, resume=True)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["step"] == 4 and ckpt["optimizer"]["state"]  # the full state, gathered
    assert_same_weights(ckpt["model_state"], reference)


def test_torchrun_without_parallel_is_a_one_line_error(corpus, tmp_path) -> None:
    env = {**os.environ, "WORLD_SIZE": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "minigpt", "train", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "add --parallel ddp" in done.stderr


@pytest.mark.slow
def test_pipeline_trains_like_one_process_through_a_resume(corpus, tmp_path) -> None:
    """2 stages (one block each), zero-bubble schedule, 3 uneven micro-batches of the step's 16
    windows; 2 steps, stop, resume to 4: the gathered checkpoint (every stage's weights in
    DecoderLM's layout, the optimizer state of both stages) equals one process's 4 steps."""
    reference = single_process(corpus, tmp_path / "single", max_steps=4, grad_accum=2)
    options = dict(batch_size=8, grad_accum=2, stages=2, microbatches=3, schedule="zb")
    printed = torchrun(corpus, tmp_path / "run", "pipeline", max_steps=2, **options)
    assert "pipeline: 2 stages x 1 replicas, blocks per stage [1, 1]" in printed
    torchrun(corpus, tmp_path / "run", "pipeline", max_steps=4, resume=True, **options)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    single = load_checkpoint(tmp_path / "single" / "ckpt.pt")
    assert ckpt["step"] == 4
    assert len(ckpt["optimizer"]["state"]) == len(single["optimizer"]["state"])  # both stages
    assert_same_weights(ckpt["model_state"], reference)
    assert torch.equal(ckpt["model_state"]["lm_head.weight"],
                       ckpt["model_state"]["embedding.token.embedding.weight"])  # fmt: skip


def test_parallel_without_torchrun_is_a_one_line_error(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "minigpt", "train", "--parallel", "zero1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env=env)  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "torchrun --nproc_per_node N -m minigpt train --parallel zero1" in done.stderr
