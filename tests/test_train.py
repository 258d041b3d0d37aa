"""Training: config validation, schedule, optimizer groups, precision choice, the pure training
step, exact resume, divergence handling, the metrics file, the main-process rule and all three
objectives through one loop (tiny models, a few steps)."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager

import pytest
import torch

from minigpt.data import prepare
from minigpt.training.checkpoint import load_checkpoint, load_model_for_inference
from minigpt.training.loop import Trainer, TrainingDivergedError
from minigpt.training.metrics import MetricsLog
from minigpt.training.optim import WeightAverage, build_optimizer, lr_at
from minigpt.training.precision import cpu_has_native_bf16, resolve_precision, time_fp32_and_bf16
from minigpt.training.run import evaluate_checkpoint, run_training
from minigpt.training.settings import OBJECTIVES, TrainConfig, build_model_for
from minigpt.training.step import train_step

TINY = dict(
    d_model=32,
    n_layers=2,
    n_heads=2,
    d_ff=64,
    block_size=16,
    batch_size=4,
    tokenizer="char",
    precision="fp32",
    device="cpu",
    progress=False,
    warmup_steps=2,
    dropout=0.0,  # the tiny preset's 0.1 would make runs differ by their masks; tests turn it on
    eval_batches=2,
    seed=7,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """~12 KB of Python's own documentation as a .txt file, and its prepared char data."""
    from pydoc_data.topics import topics

    folder = tmp_path_factory.mktemp("corpus")
    text = "\n".join(topics[k] for k in sorted(topics))[:12_000]
    path = folder / "docs.txt"
    path.write_text(text, encoding="utf-8")
    prepare(path, tokenizer="char", out_dir=folder / "data", progress=False)
    return {"data": str(path), "data_dir": str(folder / "data")}


def make_cfg(corpus, tmp_path, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, **corpus, "out_dir": str(tmp_path / "run"), **kw})


def losses(run_dir) -> list[tuple[int, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["kind"] == "train"]


# ----------------------------------------------------------------------------- config & pieces


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("objective", "gan", "use one of"),
        ("precision", "fp8", "use one of"),
        ("lr", 0.0, "must be > 0"),
        ("batch_size", 0, "at least 1"),
        ("dropout", 1.0, "[0, 1)"),
        ("device", "tpu", "cpu"),
        ("betas", (0.9,), "two numbers"),
        ("min_lr", 1.0, "between"),
        ("ema_decay", 1.0, "[0, 1)"),
        ("positional", "alibi", "use one of"),
    ],
)
def test_config_rejects_bad_values_in_one_line(field, value, words):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert field in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


def test_config_round_trips_and_rejects_two_budgets():
    cfg = TrainConfig(objective="span", d_model=64, max_tokens=10_000, time_limit_s=65.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig().run_dir.as_posix() == "runs/clm-tiny"
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(max_steps=10, max_tokens=100)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_lr_schedule_warms_up_then_decays_to_min():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    lrs = [lr_at(s, **kw) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear ramp
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))  # then never increases
    assert lrs[60] == pytest.approx(0.55)  # half way down the cosine: the mean of lr and min_lr
    assert lrs[110] == pytest.approx(0.1)
    assert lr_at(50, **{**kw, "max_steps": None}, progress=1.0) == pytest.approx(0.1)


def test_weight_decay_only_on_matrices(corpus, tmp_path):
    cfg = make_cfg(corpus, tmp_path)
    from minigpt.data import load_prepared

    model = build_model_for(cfg, load_prepared(corpus["data_dir"]).tokenizer)
    decay, no_decay = build_optimizer(model, 1e-3, 0.1, (0.9, 0.99)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["params"]
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["params"]
    n_unique = len({id(p) for p in model.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique  # tied weights once


def test_precision_resolution_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="fp16' needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    assert resolve_precision("auto", cpu, probe=lambda: (1.0, 0.99)) == "fp32"  # no real gain
    fast = resolve_precision("auto", cpu, probe=lambda: (1.0, 0.4))
    assert fast == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_budgets_resolve_to_steps(corpus, tmp_path):
    from minigpt.data import load_prepared

    data = load_prepared(corpus["data_dir"])
    cfg = make_cfg(corpus, tmp_path, max_tokens=1000, grad_accum=2)
    trainer = Trainer(build_model_for(cfg, data.tokenizer), cfg, data, data.tokenizer)
    assert trainer.tokens_per_step == 4 * 2 * 16 and trainer.max_steps == math.ceil(1000 / 128)
    with pytest.raises(ValueError, match="block_size 64 exceeds"):
        Trainer(
            build_model_for(cfg, data.tokenizer),
            make_cfg(corpus, tmp_path, block_size=64),
            data,
            data.tokenizer,
        )


class _StepClock:
    """A stand-in for the loop's `time` module: the clock moves `per_step` seconds per training
    step and not otherwise, so the step sizing sees a known speed."""

    def __init__(self, per_step: float) -> None:
        self.now, self.per_step = 0.0, per_step

    def perf_counter(self) -> float:
        return self.now


def _run_on_clock(monkeypatch, cfg, per_step=0.05, crash_at=None):
    import minigpt.training.loop as loop

    clock, real_step = _StepClock(per_step), Trainer._train_one_step

    def timed_step(self, progress):
        if self.step == crash_at:
            raise KeyboardInterrupt
        clock.now += clock.per_step
        return real_step(self, progress)

    with monkeypatch.context() as m:
        m.setattr(loop, "time", clock)
        m.setattr(Trainer, "_train_one_step", timed_step)
        return run_training(cfg)


def test_a_run_without_a_budget_sizes_its_steps_to_the_target_seconds(corpus, tmp_path,
                                                                      monkeypatch, capsys):
    """No --max-steps: after the first steps the trainer keeps as many as fit in
    target_seconds at the measured speed (50 ms a step here -> 2 s / 0.05 = 40 steps), says so,
    records it, and `--max-steps 40` repeats the run exactly; a slow machine never runs more
    than DEFAULT_MAX_STEPS."""
    from minigpt.training.settings import DEFAULT_MAX_STEPS

    kw = dict(warmup_steps=5, target_seconds=2.0, eval_interval=1000, checkpoint_interval=1000)
    sized = _run_on_clock(monkeypatch, make_cfg(corpus, tmp_path / "sized", progress=True, **kw))
    assert sized["steps"] == 40
    assert "sized to 40 steps: 50 ms per step" in capsys.readouterr().out
    resolved = json.loads((tmp_path / "sized" / "run" / "config.json").read_text())["resolved"]
    assert resolved["max_steps"] == 40
    assert resolved["max_steps_sized_from"]["seconds_per_step"] == pytest.approx(0.05)
    again = run_training(make_cfg(corpus, tmp_path / "fixed", max_steps=40, **kw))
    assert losses(tmp_path / "fixed" / "run") == losses(tmp_path / "sized" / "run")
    assert again["val_loss"] == sized["val_loss"]
    fast = make_cfg(corpus, tmp_path / "fast", **{**kw, "target_seconds": 1e6})
    from minigpt.data import load_prepared

    data = load_prepared(corpus["data_dir"])
    assert Trainer(build_model_for(fast, data.tokenizer), fast, data, data.tokenizer).max_steps \
        == DEFAULT_MAX_STEPS  # the cap, before and after sizing  # fmt: skip
    off = make_cfg(corpus, tmp_path / "off", target_seconds=0.0)
    assert not Trainer(build_model_for(off, data.tokenizer), off, data, data.tokenizer).sizing
    with pytest.raises(ValueError, match="target_seconds"):
        make_cfg(corpus, tmp_path, target_seconds=-1.0)


def test_a_sized_run_resumes_with_the_steps_it_was_sized_to(corpus, tmp_path, monkeypatch):
    """A crash after the sizing, then --resume with no budget: the run keeps its 40 steps (read
    from the checkpoint, not measured again) and ends exactly where an unbroken run ends."""
    kw = dict(warmup_steps=5, target_seconds=2.0, eval_interval=1000, checkpoint_interval=25)
    straight = _run_on_clock(monkeypatch, make_cfg(corpus, tmp_path / "a", **kw))
    with pytest.raises(KeyboardInterrupt):
        _run_on_clock(monkeypatch, make_cfg(corpus, tmp_path / "b", **kw), crash_at=30)
    resumed = _run_on_clock(monkeypatch, make_cfg(corpus, tmp_path / "b", resume=True, **kw),
                            per_step=5.0)  # a much slower machine now: no new sizing  # fmt: skip
    assert resumed["steps"] == straight["steps"] == 40
    assert losses(tmp_path / "b" / "run") == losses(tmp_path / "a" / "run")


def test_gradient_accumulation_equals_one_big_batch(corpus, tmp_path):
    from minigpt.data import load_prepared

    data = load_prepared(corpus["data_dir"])
    params = []
    for batch_size, accum in ((8, 1), (4, 2)):
        cfg = make_cfg(corpus, tmp_path, batch_size=batch_size, grad_accum=accum)
        torch.manual_seed(0)
        trainer = Trainer(build_model_for(cfg, data.tokenizer), cfg, data, data.tokenizer)
        trainer._resolve_precision()
        trainer._train_one_step(progress=None)
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[0], params[1])  # float32 tolerances: only rounding differs


# ----------------------------------------------------------------------------- the pure step

EPS = torch.finfo(torch.float32).eps


class TinyLM(torch.nn.Module):
    """The smallest model with the trainer's contract: forward(inputs, targets) -> logits, loss."""

    def __init__(self, vocab: int = 11, width: int = 8) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, inputs, targets):
        logits = self.head(torch.tanh(self.embed(inputs)))  # (B, T, vocab)
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients it was given (what the step would apply)."""

    def __init__(self, params, events=None):
        super().__init__(params, lr=0.1)
        self.events = events

    def step(self, closure=None):
        self.grads = [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]
        if self.events is not None:
            self.events.append("step")
        return super().step(closure)


def _batch(n: int, seed: int = 0, vocab: int = 11, t: int = 5):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, vocab, (n, t), generator=gen) for _ in range(2))


def test_train_step_equals_a_hand_written_step():
    torch.manual_seed(0)
    model, ref = TinyLM(), TinyLM()
    ref.load_state_dict(model.state_dict())
    opt, ref_opt = (torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (model, ref))
    inputs, targets = _batch(4)
    for _ in range(3):
        loss = train_step(model, [(inputs, targets)], opt)
        _, ref_loss = ref(inputs, targets)
        ref_loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
        assert torch.equal(loss, ref_loss.detach()) and not loss.requires_grad
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q) and p.grad is None


def test_train_step_accumulation_equals_one_batch_k_times_larger():
    torch.manual_seed(0)
    model, big = TinyLM(), TinyLM()
    big.load_state_dict(model.state_dict())
    inputs, targets = _batch(8)
    opt, big_opt = RecordingSGD(model.parameters()), RecordingSGD(big.parameters())
    micro = list(zip(inputs.split(2), targets.split(2), strict=True))  # k = 4 micro-batches
    loss = train_step(model, micro, opt)
    big_loss = train_step(big, [(inputs, targets)], big_opt)
    torch.testing.assert_close(loss, big_loss, rtol=8 * EPS, atol=0.0)
    for g, h in zip(opt.grads, big_opt.grads, strict=True):
        # the same sums in another order: equal up to a few roundings of the largest term
        torch.testing.assert_close(g, h, rtol=16 * EPS, atol=16 * EPS * float(h.abs().max()))
    assert any(float(g.abs().max()) > 0 for g in opt.grads)


def test_train_step_clips_the_global_norm():
    torch.manual_seed(0)
    model, clipped = TinyLM(), TinyLM()
    clipped.load_state_dict(model.state_dict())
    batch = [_batch(4)]
    opt, clip_opt = RecordingSGD(model.parameters()), RecordingSGD(clipped.parameters())
    train_step(model, batch, opt)
    train_step(clipped, batch, clip_opt, grad_clip=0.01)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in opt.grads]))
    clip_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in clip_opt.grads]))
    assert norm > 0.1  # clipping had something to do ...
    coef = 0.01 / (norm + 1e-6)  # PyTorch's formula (its 1e-6 guards a zero norm)
    torch.testing.assert_close(clip_norm, norm * coef, rtol=16 * EPS, atol=0.0)  # ... did it
    for g, c in zip(opt.grads, clip_opt.grads, strict=True):  # ... and kept the direction
        torch.testing.assert_close(c, g * coef, rtol=16 * EPS, atol=16 * EPS * float(c.abs().max()))


class FakeSync:
    """A GradientSync that only records when it is asked to do what."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    @contextmanager
    def no_sync(self):
        self.events.append("no_sync{")
        yield
        self.events.append("}")

    def sync_gradients(self) -> None:
        self.events.append("sync")


def test_train_step_syncs_gradients_once_after_the_last_backward():
    events: list[str] = []
    torch.manual_seed(0)
    model = TinyLM()
    model.head.weight.register_hook(lambda grad: events.append("backward"))
    inputs, targets = _batch(6)
    micro = list(zip(inputs.split(2), targets.split(2), strict=True))  # k = 3
    train_step(model, micro, RecordingSGD(model.parameters(), events), grad_sync=FakeSync(events))
    assert events == ["no_sync{", "backward", "}", "no_sync{", "backward", "}",  # micro 0, 1
                      "backward", "sync", "step"]  # fmt: skip
    with pytest.raises(ValueError, match="at least one micro-batch"):
        train_step(model, [], RecordingSGD(model.parameters()))


def test_precision_probe_leaves_gradients_and_rng_as_they_were():
    torch.manual_seed(0)
    model = TinyLM()
    inputs, targets = _batch(2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    t_fp32, t_bf16 = time_fp32_and_bf16(model, inputs, targets, repeats=1)
    assert t_fp32 > 0 and t_bf16 > 0
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.rand(3), expected)


def test_metrics_log_resumes_and_measures_tokens_per_second(tmp_path):
    log = MetricsLog(tmp_path / "run" / "metrics.jsonl")
    log.start(tokens=0)
    for step in (1, 2, 3):
        log.append("train", step, step * 10, loss=1.0 / step)
    log.start(tokens=20, resume_step=2)  # the run resumes from its step-2 checkpoint
    assert [r["step"] for r in map(json.loads, log.path.read_text().splitlines())] == [1, 2]
    assert log.tokens_per_s(120, train_seconds=2.0) == 50.0  # 100 tokens in 2 s since start
    assert log.tokens_per_s(150, train_seconds=3.0) == 30.0  # since the previous call
    quiet = MetricsLog(tmp_path / "other" / "metrics.jsonl", write=False)
    quiet.start(tokens=0)
    quiet.append("train", 1, 10, loss=1.0)
    assert not (tmp_path / "other").exists()


def test_only_the_main_process_writes_and_the_distributed_hooks_plug_in(corpus, tmp_path):
    from minigpt.data import load_prepared

    data = load_prepared(corpus["data_dir"])
    results = []
    for main in (True, False):
        cfg = make_cfg(corpus, tmp_path / str(main), max_steps=2, eval_interval=1,
                       checkpoint_interval=1, sample_every=1, sample_tokens=2)  # fmt: skip
        torch.manual_seed(0)
        trainer = Trainer(build_model_for(cfg, data.tokenizer), cfg, data, data.tokenizer,
                          is_main_process=main)  # fmt: skip
        results.append(trainer.train())
        assert cfg.run_dir.exists() == main
    assert results[0]["val_loss"] == results[1]["val_loss"]  # the same training, silently

    events: list[str] = []
    cfg = make_cfg(corpus, tmp_path / "sync", max_steps=2, grad_accum=2)
    model = build_model_for(cfg, data.tokenizer)
    optimizer = RecordingSGD(model.parameters(), events)
    trainer = Trainer(model, cfg, data, data.tokenizer, grad_sync=FakeSync(events),
                      optimizer=optimizer)  # fmt: skip
    trainer.train()
    assert trainer.optimizer is optimizer
    assert events == ["no_sync{", "}", "sync", "step"] * 2


# ----------------------------------------------------------------------------- whole runs


@pytest.mark.slow
@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_is_exact(corpus, tmp_path, monkeypatch, ema_decay):
    """6 steps straight == 3 steps, a crash, then --resume for the rest (dropout on; with and
    without a weight average, whose state must survive the restart too)."""
    kw = dict(max_steps=6, checkpoint_interval=3, eval_interval=3, log_interval=1, dropout=0.1,
              ema_decay=ema_decay)  # fmt: skip
    straight = run_training(make_cfg(corpus, tmp_path / "a", **kw))

    real_step = Trainer._train_one_step

    def crash_in_step_5(self, progress):
        if self.step == 4:  # steps 1-4 done, only steps 1-3 checkpointed
            raise KeyboardInterrupt
        return real_step(self, progress)

    monkeypatch.setattr(Trainer, "_train_one_step", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        run_training(make_cfg(corpus, tmp_path / "b", **kw))
    monkeypatch.setattr(Trainer, "_train_one_step", real_step)
    resumed = run_training(make_cfg(corpus, tmp_path / "b", resume=True, **kw))

    assert losses(tmp_path / "b" / "run") == losses(tmp_path / "a" / "run")
    assert [s for s, _ in losses(tmp_path / "a" / "run")] == [1, 2, 3, 4, 5, 6]
    assert resumed["val_loss"] == straight["val_loss"] and resumed["steps"] == 6
    ckpt_a, ckpt_b = (load_checkpoint(tmp_path / x / "run" / "ckpt.pt") for x in "ab")
    for key in ("model_state", "train_state") if ema_decay else ("model_state",):
        a, b = ckpt_a[key], ckpt_b[key]
        assert all(torch.equal(a[k], b[k]) for k in a)
    if ema_decay:  # the saved weights are the average, not the last iterate
        raw, avg = ckpt_a["train_state"], ckpt_a["model_state"]
        assert not all(torch.equal(raw[k], avg[k]) for k in raw)
    else:
        assert ckpt_a["train_state"] is None


def test_weight_average_follows_the_formula_and_swaps_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    ema = WeightAverage(model, decay=0.5)
    expected = start.clone()
    for t in range(1, 13):  # warm-up rule first, the plain 0.5 from t = 8 on
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update()
        decay = min(0.5, (1 + t) / (10 + t))
        expected = decay * expected + (1 - decay) * model.weight.detach()
    own = model.weight.detach().clone()
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), expected)
    assert torch.equal(model.weight, own)  # training weights are back
    with pytest.raises(ValueError, match="decay 1.0"):
        WeightAverage(model, decay=1.0)


def test_weight_average_is_what_eval_and_the_checkpoint_use(corpus, tmp_path):
    result = run_training(make_cfg(corpus, tmp_path, max_steps=8, ema_decay=0.8))
    ckpt_path = tmp_path / "run" / "ckpt.pt"
    assert evaluate_checkpoint(ckpt_path)["val_loss"] == pytest.approx(result["val_loss"])
    model, _, _ = load_model_for_inference(ckpt_path, "cpu")
    raw = load_checkpoint(ckpt_path)["train_state"]
    state = model.state_dict()
    assert any(not torch.equal(state[k], raw[k]) for k in raw)  # inference gets the average


@pytest.mark.slow
def test_divergence_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    real_step = Trainer._train_one_step

    def blow_up_at_step_5(self, progress):
        loss = real_step(self, progress)
        return loss * float("inf") if self.step >= 5 else loss

    monkeypatch.setattr(Trainer, "_train_one_step", blow_up_at_step_5)
    cfg = make_cfg(corpus, tmp_path, max_steps=8, checkpoint_interval=2, log_interval=3)
    with pytest.raises(TrainingDivergedError) as err:
        run_training(cfg)
    message = str(err.value)
    assert "\n" not in message and "inf" in message and "ckpt.pt" in message
    assert load_checkpoint(cfg.run_dir / "ckpt.pt")["step"] == 4  # never overwritten after


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_every_objective_trains_saves_and_evaluates(corpus, tmp_path, objective):
    cfg = make_cfg(
        corpus,
        tmp_path,
        objective=objective,
        max_steps=3,
        eval_interval=2,
        sample_every=2,
        sample_tokens=4,
    )
    result = run_training(cfg)
    assert result["steps"] == 3 and result["tokens"] == 3 * 4 * 16
    assert math.isfinite(result["val_loss"]) and result["stopped_by"] == "max_steps"
    from minigpt.data import load_prepared

    meta = load_prepared(corpus["data_dir"]).meta
    expected_bpb = result["val_loss"] * meta["val_tokens"] / (meta["val_bytes"] * math.log(2))
    if objective == "clm":
        assert result["val_bpb"] == pytest.approx(expected_bpb)
    else:  # MLM / span predict a fraction of the tokens: no code length for the whole text
        assert result["val_bpb"] is None
    for name in ("ckpt.pt", "metrics.jsonl", "config.json", "loss.png"):
        assert (cfg.run_dir / name).exists(), name
    kinds = [json.loads(line)["kind"] for line in (cfg.run_dir / "metrics.jsonl").open()]
    assert kinds.count("eval") == 2 and kinds.count("sample") == (objective == "clm")
    saved = json.loads((cfg.run_dir / "config.json").read_text())
    assert saved["train"]["objective"] == objective and saved["resolved"]["precision"] == "fp32"
    model, _, meta = load_model_for_inference(cfg.run_dir / "ckpt.pt", device="cpu")
    assert type(model).__name__ == OBJECTIVES[objective].model_class and meta["step"] == 3
    again = evaluate_checkpoint(cfg.run_dir / "ckpt.pt", device="cpu")
    assert again["val_loss"] == pytest.approx(result["val_loss"], rel=1e-6)


def test_time_limit_stops_the_run_and_auto_precision_is_recorded(corpus, tmp_path):
    cfg = make_cfg(corpus, tmp_path, time_limit_s=1e-3, eval_interval=1000, precision="auto")
    result = run_training(cfg)
    assert result["stopped_by"] == "time_limit" and math.isfinite(result["val_loss"])
    resolved = json.loads((cfg.run_dir / "config.json").read_text())["resolved"]
    assert result["precision"] == resolved["precision"] in ("fp32", "bf16")
    if cpu_has_native_bf16():  # the probe ran and its timings are kept with the run
        assert len(resolved["precision_probe_s"]) == 2
