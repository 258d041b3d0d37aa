"""Pipeline parallelism run for real on gloo: 2 and 4 processes, every schedule, the loss and
every gradient equal to one process on the same batch (the tied embedding / head included),
and a 2-D run (2 stages x 2 replicas) equal to single-process training after several steps.

One spawn per world size does all the multi-process work (start-up costs seconds); the
module-scoped fixtures return what each rank measured and the tests assert on it. The
executor's recorded operation order and activation counts are checked against the schedule
(order and counts, never wall time).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from conftest import assert_float_close

from minigpt.config import ModelConfig
from minigpt.models import DecoderLM
from minigpt.parallel.executor import split_sizes
from minigpt.parallel.launch import spawn
from minigpt.parallel.pipeline import PipelineOptimizer, PipelineParallel
from minigpt.parallel.schedules import make_schedule, peak_in_flight
from minigpt.parallel.stages import PipelineStage, partition

T, ROWS, STEPS, LR = 8, 8, 3, 0.1
CONFIG = ModelConfig(vocab_size=64, max_len=T, d_model=32, n_heads=4, n_layers=4, d_ff=64,
                     dropout=0.0, positional="learned")  # fmt: skip
TIED = "embedding.token.embedding.weight"
CASES = {  # world size -> (schedule, micro-batches): M < S, M = S, M > S, M not dividing rows
    2: [("gpipe", 4), ("1f1b", 4), ("zb", 4), ("1f1b", 1), ("zb", 3)],
    4: [("gpipe", 2), ("1f1b", 4), ("zb", 8), ("zb", 3)],
}


def optimizer(model: DecoderLM) -> torch.optim.Optimizer:
    """SGD with momentum: the update is linear in the gradients, so float rounding stays at
    rounding size. (Adam divides by sqrt(v): the gradient of a key bias is 0 in exact
    arithmetic and rounding noise in practice, and noise / sqrt(noise^2) is a full lr step,
    different on every machine.) The torchrun test covers AdamW through the trainer."""
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)


def make_model() -> DecoderLM:
    torch.manual_seed(0)
    return DecoderLM(CONFIG)


def batch(step: int = 0, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    tokens = torch.randint(0, CONFIG.vocab_size, (rows, T + 1), generator=g)
    return tokens[:, :-1], tokens[:, 1:]


def _one_pipeline(rank: int, world: int) -> dict:
    """Every case on this rank: loss, gradients of the stage, recorded order and memory."""
    out = {}
    for name, micro in CASES[world]:
        model = make_model()
        pp = PipelineParallel(model, world, micro, name)
        dist.barrier()
        result = pp.forward_backward(*batch())
        out[(name, micro)] = {
            "loss": result.loss,
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "order": [(e.op, e.microbatch) for e in result.events if e.op in ("F", "B", "W")],
            "recvs": sum(e.op == "recv" for e in result.events),
            "peak": result.peak_in_flight,
            "bytes": result.peak_activation_bytes,
        }
    if world == 4:
        out["2d"] = _two_dimensional(rank)
        try:
            PipelineParallel(make_model(), 3, 2)
        except ValueError as error:
            out["bad_world"] = str(error)
    return out


def _two_dimensional(rank: int) -> dict:
    """2 stages x 2 replicas, STEPS steps with clipping and momentum; each replica its half."""
    model = make_model()
    pp = PipelineParallel(model, 2, 2, "1f1b")
    opt = PipelineOptimizer(optimizer(model), pp)
    half = slice(pp.replica * ROWS // 2, (pp.replica + 1) * ROWS // 2)
    for step in range(STEPS):
        x, y = batch(step)
        pp.train_step(model, [(x[half], y[half])], opt, grad_clip=0.5)
    state = pp.model_state()  # gathers every stage's weights onto every rank
    return {"state": state, "optim": opt.state_dict()}


@pytest.fixture(scope="module")
def two() -> list[dict]:
    return spawn(_one_pipeline, 2, args=(2,), timeout=60)


@pytest.fixture(scope="module")
def four() -> list[dict]:
    return spawn(_one_pipeline, 4, args=(4,), timeout=90)


def reference() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = make_model()
    _, loss = model(*batch())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


def check_equal_to_one_process(ranks: list[dict], world: int) -> None:
    loss, grads = reference()
    for case in CASES[world]:
        per_rank = [r[case] for r in ranks]
        assert all(r["loss"] is None for r in per_rank[:-1])  # only the last stage has a loss
        assert_float_close(per_rank[-1]["loss"], loss, msg=str(case))
        seen: dict[str, int] = {}
        for r in per_rank:
            for name, grad in r["grads"].items():
                assert_float_close(grad, grads[name], msg=f"{case} {name}")
                seen[name] = seen.get(name, 0) + 1
        assert set(seen) == set(grads), case  # every parameter is some stage's
        # the tied matrix lives on the first and the last stage, with the same gradient
        assert seen[TIED] == 2 and torch.equal(per_rank[0]["grads"][TIED],
                                               per_rank[-1]["grads"][TIED])  # fmt: skip
        assert all(n == 1 for name, n in seen.items() if name != TIED)


@pytest.mark.slow
def test_two_stages_equal_one_process_for_every_schedule(two) -> None:
    check_equal_to_one_process(two, 2)


@pytest.mark.slow
def test_four_stages_equal_one_process_for_every_schedule(four) -> None:
    check_equal_to_one_process(four, 4)


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_executor_follows_the_schedule_and_its_memory_bound(two, four, world) -> None:
    ranks = two if world == 2 else four
    for name, micro in CASES[world]:
        schedule = make_schedule(name, world, micro)
        for stage, r in enumerate(ranks):
            run = r[(name, micro)]
            assert run["order"] == schedule[stage]  # recorded op order = the schedule's
            # receives: an activation per F (not stage 0), a gradient per B (not the last)
            assert run["recvs"] == micro * ((stage > 0) + (stage < world - 1))
            assert run["peak"] == peak_in_flight(schedule[stage])
    # GPipe keeps all 4 micro-batches alive on stage 0, 1F1B 2 (= S): half the bytes
    gpipe, one_f_one_b = two[0][("gpipe", 4)]["bytes"], two[0][("1f1b", 4)]["bytes"]
    assert gpipe == 2 * one_f_one_b > 0


@pytest.mark.slow
def test_two_stages_by_two_replicas_train_like_one_process(four) -> None:
    model = make_model()
    opt = optimizer(model)
    for step in range(STEPS):
        _, loss = model(*batch(step))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
    expected = model.state_dict()
    for r in four:
        assert r["2d"]["state"].keys() == expected.keys()
        for key, value in r["2d"]["state"].items():
            assert_float_close(value, expected[key], msg=key)
    # the gathered optimizer state covers every parameter, as one process's does
    assert len(four[0]["2d"]["optim"]["state"]) == len(opt.state_dict()["state"])
    # the tied copies stayed equal: the first and last stage hold the same matrix
    assert torch.equal(four[0]["2d"]["state"]["lm_head.weight"],
                       four[1]["2d"]["state"]["embedding.token.embedding.weight"])  # fmt: skip
    assert "start stages x replicas processes" in four[0]["bad_world"]


def test_partition_balances_blocks_and_checks_counts() -> None:
    model = make_model()
    assert partition(model, 1) == [4] and partition(model, 4) == [1, 1, 1, 1]
    assert partition(model, 2) == [2, 2]  # embeddings and head weigh about the same here
    assert partition(model, 2, counts=[1, 3]) == [1, 3]
    stage = PipelineStage(model, 1, 2, counts=[1, 3])
    assert stage.block_range == (1, 4) and stage.is_last and stage.embedding is None
    assert stage.tied_parameters() == [model.lm_head.weight]
    for bad in ({"n_stages": 5}, {"n_stages": 2, "counts": [4, 0]}):
        with pytest.raises(ValueError, match="blocks") as info:
            partition(model, **bad)
        assert "\n" not in str(info.value)


def test_micro_batch_sizes_and_too_many_micro_batches() -> None:
    assert split_sizes(8, 3) == [3, 3, 2] and split_sizes(8, 8) == [1] * 8
    with pytest.raises(ValueError, match="use at most 4 micro-batches") as info:
        split_sizes(4, 6)
    assert "\n" not in str(info.value)
