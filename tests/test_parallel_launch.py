"""spawn: results come back in rank order, and every kind of failure is an error naming the
rank — a raise (with its traceback), an abrupt exit or kill (exit code / signal), a rank stuck
forever (stopped at the deadline, with where it was stuck) — never a hang.

Each spawn starts fresh interpreters that import torch (seconds), so each test spawns once.
The `timeout` marks are hang guards for the tests themselves, not timing claims.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import textwrap
import time

import pytest
import torch.distributed as dist

from minigpt.parallel.launch import (
    SpawnError,
    free_port,
    init_distributed,
    require_group,
    spawn,
)


def _raises(rank: int) -> None:
    if rank == 1:
        raise ValueError("boom on purpose")
    dist.barrier()  # rank 0 waits for a peer that is gone


def _dies(rank: int) -> None:
    if rank == 1:
        os._exit(3)
    if rank == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()


def _sleep_forever(rank: int) -> None:
    if rank == 1:
        time.sleep(10_000)
    dist.barrier()


WORKER = """
import os
import torch
import torch.distributed as dist


def worker(rank, offset):
    t = torch.tensor([float(rank + offset)])
    dist.all_reduce(t)
    env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {"rank": rank, "sum": t.item(), "world": dist.get_world_size(),
            "threads": torch.get_num_threads(), "env": env}
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_spawn_returns_every_ranks_result_in_rank_order(tmp_path):
    # The function lives in a module loaded from a file path, as lessons are: the children
    # cannot import it by name and must load the file.
    path = tmp_path / "file_only_module.py"
    path.write_text(textwrap.dedent(WORKER))
    spec = importlib.util.spec_from_file_location("file_only_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = spawn(module.worker, 2, args=(10,), timeout=30)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sum"] == 21.0 and r["world"] == 2 for r in results)  # (0+10) + (1+10)
    assert all(r["threads"] == 1 for r in results)
    # The same variables torchrun sets, so init_distributed() serves both launchers.
    assert results[1]["env"]["RANK"] == "1" and results[1]["env"]["LOCAL_RANK"] == "1"
    assert results[0]["env"]["WORLD_SIZE"] == "2"
    assert results[0]["env"]["MASTER_PORT"] == results[1]["env"]["MASTER_PORT"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_rank_that_raises_is_named_with_its_traceback():
    with pytest.raises(SpawnError) as info:
        spawn(_raises, 2, timeout=40)  # fails long before the deadline
    err = info.value
    assert err.rank == 1 and not err.timed_out
    text = str(err)
    assert text.splitlines()[0].endswith("rank 1 raised ValueError: boom on purpose")
    assert "in _raises" in text and 'raise ValueError("boom on purpose")' in text  # traceback
    assert 0 in err.failures  # the victim is reported too, after the cause


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_rank_that_exits_or_is_killed_is_named_with_its_exit_code():
    with pytest.raises(SpawnError) as info:
        spawn(_dies, 3, timeout=40)
    err = info.value
    assert err.rank in (1, 2) and not err.timed_out
    assert "rank 1 exited with code 3" in err.failures[1]
    assert "rank 2 was killed by SIGKILL" in err.failures[2]
    assert "rank 1 exited with code 3" in str(err) and "rank 2 was killed" in str(err)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_stuck_rank_is_stopped_at_the_deadline_and_shown_where_it_was():
    with pytest.raises(SpawnError) as info:
        spawn(_sleep_forever, 2, timeout=2)
    err = info.value
    assert err.timed_out and err.rank == 1  # the sleeper, not its victim in the barrier
    head = str(err).splitlines()[0]
    assert "rank 1 did not finish within 2 s" in head and "_sleep_forever" in head
    assert "time.sleep" in err.failures[1] or "_sleep_forever" in err.failures[1]
    assert "in barrier" in err.failures[0]  # rank 0 was waiting in the collective


def test_bad_arguments_and_missing_environment_are_one_line_errors(monkeypatch):
    with pytest.raises(ValueError, match="module-level function"):
        spawn(lambda rank: rank, 2)
    with pytest.raises(ValueError, match="world_size=0"):
        spawn(_raises, 0)
    with pytest.raises(ValueError, match="timeout=0"):
        spawn(_raises, 2, timeout=0)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        init_distributed()
    with pytest.raises(RuntimeError, match="ShardedOptimizer needs an initialised process group"):
        require_group("ShardedOptimizer")
    assert 0 < free_port() < 65536
