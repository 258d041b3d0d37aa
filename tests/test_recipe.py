"""The homework recipe: `--preset homework` resolves to the course's run (35M parameters, ~105M
tokens of WikiText-103, a batch that fits a 24 GB card), flags override it, and a tiny CPU run
of the same command path (the recipe with small overrides) trains, evaluates and samples."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from minigpt import cli
from minigpt.config import PRESETS
from minigpt.corpora import CORPORA
from minigpt.memory import GIB, setting_bytes
from minigpt.scaling import count_parameters
from minigpt.training.settings import RECIPES, TrainConfig, model_config_for, with_recipe

GPT2 = SimpleNamespace(vocab_size=50257, special_tokens={})  # what the gpt2 tokenizer reports


def test_the_homework_recipe_is_the_courses_run():
    cfg = with_recipe(preset="homework")
    assert (cfg.data, cfg.tokenizer) == ("wikitext103", "gpt2")
    assert "wikitext103" in CORPORA  # a named corpus, with its own validation split
    config = model_config_for(cfg, GPT2)
    n_params = count_parameters(config)
    assert n_params == 35_269_632  # the course's "35M parameters"
    tokens_per_step = cfg.batch_size * cfg.block_size
    steps = math.ceil(cfg.max_tokens / tokens_per_step)  # what the Trainer runs
    assert (cfg.batch_size, cfg.block_size, steps) == (32, 512, 6409)
    assert steps * tokens_per_step == pytest.approx(105e6, rel=1e-3)  # "105M tokens"
    assert (cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.betas) == (6e-4, 6e-5, 500, (0.9, 0.95))
    assert config.dropout == 0.0 and cfg.sample_prompt == "Thomas Jefferson was"
    assert cfg.eval_batches * tokens_per_step > 600_000  # all of WikiText-103's validation
    # fits a 24 GB card in bf16 with room to spare (the allocator and the CUDA context)
    assert setting_bytes(config, n_params, "bf16", cfg.batch_size) < 0.5 * 24 * GIB


def test_flags_override_the_recipe_and_a_budget_replaces_its_budget():
    cfg = with_recipe(preset="homework", lr=1e-3, max_steps=2, tokenizer="char")
    assert (cfg.lr, cfg.max_steps, cfg.max_tokens, cfg.tokenizer) == (1e-3, 2, None, "char")
    assert cfg.batch_size == 32  # the rest of the recipe stays
    assert with_recipe(preset="homework", time_limit_s=60.0).max_tokens is None
    main_job = with_recipe()  # the default preset's recipe: the CPU main job
    assert main_job == with_recipe(preset="tiny") == TrainConfig(**RECIPES["tiny"])
    assert (main_job.positional, main_job.activation, main_job.dropout) == ("rope", "relu", None)
    assert (main_job.d_model, main_job.d_ff, main_job.lr) == (128, 512, 2e-3)
    # a width given replaces both of the recipe's: the preset's d_ff, not the recipe's 512
    assert (with_recipe(d_model=256).d_model, with_recipe(d_model=256).d_ff) == (256, None)
    assert (with_recipe(d_ff=2048).d_model, with_recipe(d_ff=2048).lr) == (None, 2e-3)
    assert with_recipe(preset="small") == TrainConfig(preset="small")  # no recipe: defaults
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for preset, recipe in RECIPES.items():
        assert preset in PRESETS and set(recipe) <= fields


def test_a_tiny_run_of_the_recipe_trains_evaluates_and_samples(tmp_path, capsys):
    from pydoc_data.topics import topics

    text = tmp_path / "text.txt"  # the prompt's characters must be in a char vocabulary
    body = "\n".join(topics[k] for k in sorted(topics))[:8000]
    text.write_text("Thomas Jefferson was here.\n" + body, encoding="utf-8")
    argv = ["train", "--preset", "homework", "--data", str(text), "--tokenizer", "char",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
            "--d-model", "32", "--n-layers", "1", "--n-heads", "2", "--d-ff", "64",
            "--block-size", "16", "--batch-size", "4", "--max-steps", "2",
            "--device", "cpu", "--precision", "fp32"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "done: 2 steps, 128 tokens" in out and "MFU" in out
    assert "perplexity" in out and "bits per byte" in out
    assert "sample:\nThomas Jefferson was" in out
    resolved = (tmp_path / "run" / "config.json").read_text()
    assert '"lr": 0.0006' in resolved and '"sample_prompt": "Thomas Jefferson was"' in resolved
