"""The command line: help is complete, misuse is one line and exit status 2, the jobs run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt import cli
from minigpt.cli import build_parser, main

SUBCOMMANDS = ["prepare", "train", "sample", "eval", "info"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse exits for --help and bad flags
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_usage_error(code: int, err: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error" in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli([command, "--help"], capsys)
    assert code == 0
    assert f"minigpt {command}" in out
    # each option is documented, not just listed
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help text"


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "minigpt", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "prepare" in proc.stdout and "sample" in proc.stdout


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli([], capsys)
    assert code == 2
    assert "COMMAND" in out


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--objective", "xlnet"],
        ["train", "--max-steps", "ten"],
        ["frobnicate"],
        ["sample"],
    ],
)
def test_bad_flags_are_one_line(args: list[str], capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(args, capsys)
    assert_one_line_usage_error(code, err)


def test_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for command in ("sample", "eval"):
        code, _, err = run_cli([command, str(tmp_path / "nope.pt")], capsys)
        assert_one_line_usage_error(code, err)
        assert "nope.pt" in err


def test_corrupt_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    code, _, err = run_cli(["sample", str(bad)], capsys)
    assert_one_line_usage_error(code, err)


def test_unknown_preset_is_one_line(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["info", "--preset", "gpt5"], capsys)
    assert_one_line_usage_error(code, err)
    assert "gpt5" in err
    code, _, err = run_cli(["train", "--preset", "gpt5", "--max-steps", "1"], capsys)
    assert_one_line_usage_error(code, err)


def test_bad_sizes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["info", "--d-model", "100", "--n-heads", "3"], capsys)
    assert_one_line_usage_error(code, err)
    code, _, err = run_cli(
        ["train", "--d-model", "100", "--n-heads", "3", "--out", str(tmp_path)], capsys
    )
    assert_one_line_usage_error(code, err)


def test_missing_data_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["prepare", "--data", str(tmp_path / "missing.txt")], capsys)
    assert_one_line_usage_error(code, err)
    assert "missing.txt" in err


def test_prepare_workers_and_tokenizer_sample(tmp_path: Path, capsys: pytest.CaptureFixture):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 400, encoding="utf-8")
    for flags in (["--workers", "0"], ["--tokenizer-sample-mb", "0"]):
        code, _, err = run_cli(["prepare", "--data", str(corpus), *flags], capsys)
        assert_one_line_usage_error(code, err)
    code, out, err = run_cli(["prepare", "--data", str(corpus), "--vocab-size", "300",
                              "--workers", "2", "--tokenizer-sample-mb", "0.005",
                              "--data-dir", str(tmp_path / "d")], capsys)  # fmt: skip
    assert code == 0, err
    assert "tokens" in out and (tmp_path / "d" / "train.bin").exists()


def test_bad_sampling_settings_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for flags in (["--top-p", "1.5"], ["--temperature", "-1"], ["--max-new-tokens", "0"]):
        code, _, err = run_cli(["sample", str(tmp_path / "x.pt"), *flags], capsys)
        assert_one_line_usage_error(code, err)


def test_info_prints_parameters(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["info", "--preset", "gpt2-small", "--vocab-size", "50257"], capsys)
    assert code == 0
    # GPT-2 small has ~124M parameters (Radford et al. 2019, with tied embeddings)
    line = next(line for line in out.splitlines() if line.startswith("parameters"))
    n = int(line.split()[1].replace(",", ""))
    assert 120e6 < n < 130e6


@pytest.mark.slow
def test_prepare_train_sample_eval_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    data_dir, out = tmp_path / "data", tmp_path / "run"
    code, out_text, err = run_cli(
        ["prepare", "--data", str(corpus), "--tokenizer", "char", "--data-dir", str(data_dir)],
        capsys,
    )
    assert code == 0, err
    assert "tokens" in out_text
    common = ["--data", str(corpus), "--tokenizer", "char", "--data-dir", str(data_dir)]
    code, out_text, err = run_cli(
        ["train", *common, "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
         "--d-ff", "64", "--block-size", "16", "--batch-size", "8", "--max-steps", "30",
         "--eval-interval", "15", "--lr", "0.01", "--precision", "fp32", "--device", "cpu",
         "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    assert "bits per byte" in out_text
    ckpt = out / "ckpt.pt"
    assert ckpt.exists()
    code, out_text, err = run_cli(["sample", str(ckpt), "--prompt", "the ", "--max-new-tokens",
                                   "20", "--device", "cpu"], capsys)
    assert code == 0, err
    assert out_text.strip()
    code, out_text, err = run_cli(["eval", str(ckpt), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "bits per byte" in out_text
    # resuming a finished run with a larger budget continues from the checkpoint
    code, out_text, err = run_cli(
        ["train", *common, "--d-model", "32", "--n-layers", "1", "--n-heads", "2",
         "--d-ff", "64", "--block-size", "16", "--batch-size", "8", "--max-steps", "40",
         "--eval-interval", "20", "--lr", "0.01", "--precision", "fp32", "--device", "cpu",
         "--out", str(out), "--resume", "--no-sample"],
        capsys,
    )
    assert code == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mlm", "span"])
def test_train_and_sample_other_families(
    objective: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    out = tmp_path / objective
    code, out_text, err = run_cli(
        ["train", "--objective", objective, "--data", str(corpus), "--tokenizer", "char",
         "--data-dir", str(tmp_path / "data"), "--d-model", "32", "--n-layers", "1",
         "--n-heads", "2", "--d-ff", "64", "--block-size", "64", "--batch-size", "8",
         "--max-steps", "10", "--eval-interval", "10", "--precision", "fp32", "--device", "cpu",
         "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    assert "clm only" in out_text  # bits per byte is not claimed for partial objectives
    ckpt = str(out / "ckpt.pt")
    if objective == "mlm":
        code, out_text, err = run_cli(["sample", ckpt, "--prompt", "the quick [MASK] fox"], capsys)
        assert code == 0, err
        assert out_text.count("[MASK] #1:") == 1 and out_text.count(",") >= 4  # five candidates
        code, _, err = run_cli(["sample", ckpt, "--prompt", "nothing to fill"], capsys)
        assert_one_line_usage_error(code, err)
    else:
        prompt = "the quick <extra_id_0> fox jumps"
        code, out_text, err = run_cli(["sample", ckpt, "--prompt", prompt, "--temperature", "0",
                                       "--max-new-tokens", "8"], capsys)
        assert code == 0, err
        filled = out_text.strip()
        assert filled.startswith("the quick ") and filled.endswith(" fox jumps")
        assert "<extra_id_0>" not in filled


def test_openmp_waiters_sleep_only_when_other_work_holds_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = cli._busy_cores(interval_s=0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1) + 1e-6
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch")  # the policy only matters before torch loads
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cli, "_busy_cores", lambda: 0.2)
    cli._choose_openmp_wait_policy()
    assert "OMP_WAIT_POLICY" not in os.environ  # idle machine: OpenMP's defaults are faster
    monkeypatch.setattr(cli, "_busy_cores", lambda: 1.1)
    cli._choose_openmp_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    cli._choose_openmp_wait_policy()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's own setting wins


def test_train_sets_the_wait_policy_before_the_parser_imports_torch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls: list[str] = []
    real_parser = cli.build_parser
    monkeypatch.setattr(cli, "_choose_openmp_wait_policy", lambda: calls.append("policy"))
    monkeypatch.setattr(cli, "build_parser", lambda: calls.append("parser") or real_parser())
    run_cli(["train", "--help"], capsys)
    assert calls == ["policy", "parser"]  # the registries behind the choices import torch
    calls.clear()
    run_cli(["info", "--help"], capsys)
    assert calls == ["parser"]  # only training runs long enough for the policy to matter


# --- minigpt sample: the course's panel, greedy, beams, stop strings, streaming, shots


def _tiny_checkpoint(tmp_path: Path, family: str = "DecoderLM") -> Path:
    import torch

    from minigpt.config import ModelConfig
    from minigpt.models import MODEL_CLASSES
    from minigpt.tokenizer import EOT, CharTokenizer
    from minigpt.training.checkpoint import save_checkpoint

    text = ("Classify this review: I loved this movie! I don't like this chair. "
            "Who would use this product? Sentiment Positive Negative\n")
    tok = CharTokenizer.train(text, [EOT])
    torch.manual_seed(0)
    ids = dict(pad_id=tok.special_tokens[EOT], start_id=tok.special_tokens[EOT])
    cfg = ModelConfig(vocab_size=tok.vocab_size, max_len=256, d_model=32, n_heads=2,
                      n_layers=1, d_ff=64, **(ids if family == "Seq2SeqLM" else {}))
    model = MODEL_CLASSES[family](cfg)
    return save_checkpoint(tmp_path / f"{family}.pt", model=model, model_config=cfg.to_dict(),
                           tokenizer=tok)


def test_sample_help_shows_the_course_panel_defaults(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["sample", "--help"], capsys)
    assert code == 0
    flat = " ".join(out.split())
    for text in ("(default 200)", "(default 25)", "(default 1 = off)", "(default 0.8)"):
        assert text in flat
    for flag in ("--greedy", "--top-k", "--top-p", "--beam", "--stop", "--stream", "--shots"):
        assert flag in out


@pytest.mark.parametrize("family", ["DecoderLM", "Seq2SeqLM"])
def test_sample_flags_for_each_family(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = str(_tiny_checkpoint(tmp_path, family))
    base = ["sample", ckpt, "--prompt", "Sentiment", "--max-new-tokens", "12", "--device", "cpu"]
    code, greedy, err = run_cli([*base, "--greedy"], capsys)
    assert code == 0, err
    code, zero_t, _ = run_cli([*base, "--temperature", "0"], capsys)
    assert greedy == zero_t  # --greedy is temperature 0
    code, beam1, _ = run_cli([*base, "--beam", "1", "--greedy"], capsys)
    assert beam1 == greedy
    code, beam, err = run_cli([*base, "--beam", "3"], capsys)
    assert code == 0 and beam.strip(), err
    code, a, _ = run_cli([*base, "--top-k", "5", "--top-p", "0.9", "--seed", "4"], capsys)
    code, b, _ = run_cli([*base, "--top-k", "5", "--top-p", "0.9", "--seed", "4"], capsys)
    assert a == b  # seeded
    code, streamed, err = run_cli([*base, "--seed", "4", "--top-k", "5", "--top-p", "0.9",
                                   "--stream"], capsys)
    assert code == 0 and streamed == a, err  # streamed pieces add up to the same text
    code, full, _ = run_cli([*base, "--seed", "7", "--temperature", "2"], capsys)
    full = full.rstrip("\n")
    head = "Sentiment" if family == "DecoderLM" else ""  # a GPT repeats its prompt
    cont = full[len(head) :]
    stop = next((c for c in cont if c.strip()), None)
    if stop is not None:
        code, cut, err = run_cli([*base, "--seed", "7", "--temperature", "2", "--stop", stop],
                                 capsys)
        assert code == 0, err
        assert cut.rstrip("\n") == head + cont[: cont.index(stop)]


def test_sample_shots_scores_labels_and_bad_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = str(_tiny_checkpoint(tmp_path))
    shots = tmp_path / "shots.tsv"
    shots.write_text("I loved this movie!\tPositive\nI don't like this chair.\tNegative\n")
    code, out, err = run_cli(["sample", ckpt, "--prompt", "Who would use this product?",
                              "--shots", str(shots)], capsys)
    assert code == 0, err
    assert out.count("Classify this review:") == 3 and "Sentiment: Positive" in out
    assert "log p('Positive')" in out and "log p('Negative')" in out
    assert out.strip().splitlines()[-1] in ("answer: Positive", "answer: Negative")
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    for flags in (["--shots", str(bad)], ["--shots", str(tmp_path / "none.tsv")],
                  ["--beam", "0"], ["--top-k", "0"]):
        code, _, err = run_cli(["sample", ckpt, *flags], capsys)
        assert_one_line_usage_error(code, err)


# --- info's memory table and "does it train on my GPU?"; quantize -> sample / eval


def test_info_memory_table_and_gpu_answer(capsys: pytest.CaptureFixture) -> None:
    from minigpt import memory
    from minigpt.config import ModelConfig
    from minigpt.scaling import count_parameters

    code, out, _ = run_cli(["info", "--preset", "gpt2-small", "--batch-size", "8"], capsys)
    assert code == 0
    n = count_parameters(ModelConfig.from_preset("gpt2-small"))
    fp32 = next(line for line in out.splitlines() if line.strip().startswith("fp32 "))
    weights_gib = float(fp32.split()[1])
    assert weights_gib == pytest.approx(memory.model_bytes(n) / memory.GIB, abs=1e-3)
    assert "ZeRO-3" in out and "int8" in out
    answers = [line for line in out.splitlines() if "A100 80GB" in line or "T4" in line]
    assert len(answers) == 2 and all("yes: bf16 mixed" in a for a in answers)
    # a 7B-sized model on one 24 GB card: no setting fits; on 64 of them ZeRO does it
    big = ["info", "--d-model", "4096", "--n-layers", "32", "--n-heads", "32", "--d-ff",
           "11008", "--vocab-size", "32000", "--block-size", "2048", "--batch-size", "8"]
    code, out, _ = run_cli(big, capsys)
    assert code == 0 and "RTX 3090 / 4090 (24 GB)   no setting fits" in out
    code, out, _ = run_cli([*big, "--gpus", "64"], capsys)
    line = next(line for line in out.splitlines() if "RTX 3090" in line)
    assert "yes" in line and "ZeRO-" in line
    code, _, err = run_cli(["info", "--gpus", "0"], capsys)
    assert_one_line_usage_error(code, err)


@pytest.mark.slow
def test_quantize_then_sample_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "--data", str(corpus), "--tokenizer", "char", "--data-dir", str(tmp_path / "d"),
         "--d-model", "64", "--n-layers", "2", "--n-heads", "2", "--d-ff", "128",
         "--block-size", "16", "--batch-size", "8", "--max-steps", "40", "--eval-interval", "40",
         "--lr", "0.01", "--precision", "fp32", "--device", "cpu", "--out", str(out),
         "--no-sample"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    ckpt = out / "ckpt.pt"
    code, text, err = run_cli(["quantize", str(ckpt)], capsys)  # no format chosen
    assert_one_line_usage_error(code, err)
    code, text, err = run_cli(["quantize", str(ckpt), "--int8"], capsys)
    assert code == 0, err
    q = out / "ckpt-int8.pt"
    assert q.is_file() and str(q) in text
    code, _, err = run_cli(["quantize", str(q), "--int8"], capsys)  # twice is a mistake
    assert_one_line_usage_error(code, err)

    from minigpt.quantize import Int8Linear
    from minigpt.training.checkpoint import load_model_for_inference

    model, _, meta = load_model_for_inference(q, device="cpu")
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 2 * 6
    assert meta["extra"]["quantization"] == "int8-per-channel"

    from minigpt.training.run import evaluate_checkpoint

    code, text, err = run_cli(["eval", str(q), "--device", "cpu"], capsys)
    assert code == 0 and "bits per byte" in text, err
    before = evaluate_checkpoint(ckpt, device="cpu")["val_bpb"]
    after = evaluate_checkpoint(q, device="cpu")["val_bpb"]
    assert after != before and abs(after - before) < 0.05 * before  # rounding, not ruin
    code, text, err = run_cli(["sample", str(q), "--prompt", "the ", "--max-new-tokens", "20",
                               "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0, err
    assert text.strip()
