"""Starting and stopping a group of training processes, so that a failure is an error, not a hang.

Data-parallel training runs one process per device ("rank"); the ranks find each other through
a rendezvous address and then talk only through collectives (all-reduce, broadcast, ...). Two
ways to start them:

* `torchrun --nproc_per_node=N script.py` starts N copies and sets RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR and MASTER_PORT in each one's environment; the script calls `init_distributed()`
  at the top and `shutdown()` at the end.
* `spawn(fn, world_size)` does the same from inside Python (tests and lessons): it picks a free
  port, starts `world_size` fresh interpreters with the "spawn" start method, sets those same
  variables, joins the process group, calls `fn(rank, *args)` in each and returns every rank's
  return value, in rank order.

The hard part of multi-process code is failure. A collective waits for *every* rank, so one
rank that raises, exits or sleeps leaves the others blocked forever. `spawn` therefore watches
each child's result pipe and its process handle at once and always ends within its deadlines:

* a rank that raises sends its traceback back; `spawn` raises `SpawnError` naming the rank;
* a rank that dies without a word (`os._exit`, a segfault, the OOM killer) is seen through its
  exit code ("rank 1 exited with code 3", "rank 0 was killed by SIGKILL");
* a rank that never finishes is stopped at the deadline; before killing it, `spawn` asks it
  (SIGUSR1 + `faulthandler`) where it is, so the error shows e.g. rank 1 in `time.sleep` and
  rank 0 waiting in `barrier`: the stuck rank and its victim, told apart.

After one rank fails the others get a short grace period to report (usually "connection closed
by peer" from the collective they were in), then every child still running is terminated.
Lesson 12 uses `spawn`; `minigpt/parallel/ddp.py` and `zero.py` need the group it sets up.
"""

from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import multiprocessing as mp
import os
import pickle
import re
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# After the first failure, how long the other ranks get to report their own error before they
# are terminated: long enough for "connection closed" to arrive, short enough not to wait.
GRACE_S = 2.0


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the group: its rank, the group size, its rank on this host."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 is the one that prints and writes files."""
        return self.rank == 0


class SpawnError(RuntimeError):
    """One or more ranks of `spawn` failed; `rank` is the first one, `failures` all of them."""

    def __init__(self, message: str, rank: int, failures: dict[int, str], timed_out: bool):
        super().__init__(message)
        self.rank = rank
        self.failures = failures
        self.timed_out = timed_out


def init_distributed(backend: str | None = None, timeout: float = 300.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables; returns DistInfo.

    `backend` defaults to "nccl" when CUDA is available (each rank then uses GPU LOCAL_RANK),
    else "gloo". `timeout` (seconds) bounds every collective: a rank blocked that long raises
    instead of hanging. Calling it twice is an error; call `shutdown()` at the end.
    """
    missing = [name for name in ENV_VARS if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"init_distributed: environment variables {missing} are not set; start the script "
            "with `torchrun --nproc_per_node=N script.py`, or use minigpt.parallel.launch.spawn"
        )
    if dist.is_initialized():
        raise RuntimeError("init_distributed: a process group is already initialised")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # one GPU per rank, before any collective
    dist.init_process_group(
        backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout)
    )
    return DistInfo(rank, world, local_rank)


def shutdown() -> None:
    """Leave the process group (does nothing when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def require_group(what: str) -> tuple[int, int]:
    """(rank, world_size) of the current group, or a one-line error saying how to create one."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{what} needs an initialised process group: call "
            "minigpt.parallel.launch.init_distributed() under torchrun, or run inside spawn()"
        )
    return dist.get_rank(), dist.get_world_size()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it), for the rendezvous.

    Between this call and rank 0 binding the port another program could take it; the window
    is milliseconds, and the failure would be a clear "address already in use" from rank 0.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spawn(
    fn: Callable[..., Any],
    world_size: int,
    *,
    args: Sequence[Any] = (),
    backend: str = "gloo",
    timeout: float = 60.0,
    start_timeout: float = 120.0,
    threads: int = 1,
) -> list[Any]:
    """Run `fn(rank, *args)` in `world_size` new processes joined in a group; return results.

    `fn` must be a module-level function (a child imports it by module and name, or loads its
    file); `args` and the return values must pickle. `timeout` (seconds) is the deadline for
    `fn` once every rank has joined the group; `start_timeout` the deadline for starting the
    interpreters and joining (importing torch takes seconds). `threads` sets each child's
    torch threads: 1 keeps N ranks from fighting over a few cores. Raises `SpawnError` naming
    the failed rank(s); every child is gone when `spawn` returns or raises.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if timeout <= 0 or start_timeout <= 0:
        raise ValueError(f"timeout={timeout} and start_timeout={start_timeout} must be > 0")
    name = getattr(fn, "__qualname__", repr(fn))
    if not callable(fn) or "<locals>" in name or "<lambda>" in name:
        raise ValueError(f"spawn needs a module-level function, got {fn!r}")
    target = (fn.__module__, fn.__code__.co_filename, name)
    payload = pickle.dumps(tuple(args))
    ctx = mp.get_context("spawn")
    port = free_port()
    # The process group's own timeout is the backstop for a child whose parent died: longer
    # than our deadline, so that normally the parent's report (with stack dumps) comes first.
    group_timeout = timeout + start_timeout + 30.0
    settings = (backend, group_timeout, threads, target, payload)
    with tempfile.TemporaryDirectory(prefix="minigpt-spawn-") as tmp:
        procs, pipes = [], []
        try:
            for rank in range(world_size):
                reader, writer = ctx.Pipe(duplex=False)
                # The variables torchrun sets, so the child joins exactly as under torchrun.
                env = {"RANK": rank, "WORLD_SIZE": world_size, "LOCAL_RANK": rank}
                env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
                stack = str(Path(tmp) / f"stack{rank}.txt")
                p = ctx.Process(
                    target=_child,
                    args=(env, settings, writer, stack),
                    name=f"minigpt-rank{rank}",
                    daemon=True,  # never outlive the parent
                )
                p.start()
                writer.close()  # the child holds the only write end: EOF means it is gone
                procs.append(p)
                pipes.append(reader)
            return _supervise(procs, pipes, name, timeout, start_timeout, Path(tmp))
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(2.0)
                if p.is_alive():
                    p.kill()
                    p.join()
            for reader in pipes:
                reader.close()


def _supervise(
    procs: list, pipes: list[Connection], name: str, timeout: float, start_timeout: float, tmp: Path
) -> list[Any]:
    """Wait for every rank's result, or for the first failure, or for a deadline."""
    world = len(procs)
    results: dict[int, Any] = {}
    failures: dict[int, str] = {}
    collateral: set[int] = set()  # failures that look like a reaction to another rank's
    started: set[int] = set()
    deadline = time.monotonic() + start_timeout
    phase = "start"
    first_failure_at: float | None = None
    open_pipes = {pipes[r]: r for r in range(world)}
    sentinels = {procs[r].sentinel: r for r in range(world)}

    def finished(rank: int) -> bool:
        return rank in results or rank in failures

    while not all(finished(r) for r in range(world)):
        limit = deadline if first_failure_at is None else first_failure_at + GRACE_S
        remaining = limit - time.monotonic()
        if remaining <= 0:
            break
        ready = wait(
            list(open_pipes) + [s for s, r in sentinels.items() if not finished(r)],
            timeout=remaining,
        )
        for obj in ready:
            if obj in open_pipes:
                rank = open_pipes[obj]
                try:
                    message = obj.recv()
                except (EOFError, OSError):
                    del open_pipes[obj]  # closed without a result: the sentinel tells the rest
                    continue
                kind = message[0]
                if kind == "started":
                    started.add(rank)
                    if len(started) == world and phase == "start":
                        phase, deadline = "run", time.monotonic() + timeout
                elif kind == "ok":
                    results[rank] = pickle.loads(message[1])
                else:  # ("error", text, is_collateral)
                    failures[rank] = f"rank {rank} raised {message[1]}"
                    if message[2]:
                        collateral.add(rank)
            else:
                rank = sentinels[obj]
                if finished(rank):
                    continue
                reader = pipes[rank]
                if reader in open_pipes and reader.poll(0.5):
                    continue  # its last message is still in the pipe: read it next round
                procs[rank].join(1.0)
                failures[rank] = f"rank {rank} {_describe_exit(procs[rank].exitcode)}"
        if failures and first_failure_at is None:
            first_failure_at = time.monotonic()

    stuck = [r for r in range(world) if not finished(r)]
    timed_out = bool(stuck) and not failures
    for rank in stuck:
        if not timed_out:
            failures[rank] = f"rank {rank} was still running after another rank failed"
            collateral.add(rank)
            continue
        where = _stack_of(procs[rank], tmp / f"stack{rank}.txt")
        if "distributed_c10d" in where:
            collateral.add(rank)  # waiting in a collective: for a peer, probably the stuck one
        limit_s = timeout if phase == "run" else start_timeout
        what = "finish" if phase == "run" else "start and join the group"
        failures[rank] = (
            f"rank {rank} did not {what} within {limit_s:g} s and was terminated, "
            f"in {_innermost(where)}\nits stack, most recent call first:\n{where}"
        )
    if not failures:
        return [results[r] for r in range(world)]
    # Lead with a rank whose failure is its own (not "connection closed" because a peer died).
    order = sorted(failures, key=lambda r: (r in collateral, r))
    first = order[0]
    head = failures[first].splitlines()[0]
    lines = [f"spawn({name}, world_size={world}) failed: {head}"]
    lines += [f"  also: {failures[r].splitlines()[0]}" for r in order[1:]]
    for r in order:
        lines.append(f"\n--- rank {r} ---\n{failures[r]}")
    raise SpawnError("\n".join(lines), first, failures, timed_out)


def _describe_exit(code: int | None) -> str:
    """A child's exit code in words: its own exit status, or the signal that killed it."""
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name} without returning a result"
        except ValueError:
            return f"was killed by signal {-code} without returning a result"
    return f"exited with code {code} without returning a result (see its output above)"


def _stack_of(proc, path: Path) -> str:
    """Ask a running child for its Python stack (SIGUSR1 -> faulthandler) and read it back."""
    if not hasattr(signal, "SIGUSR1") or not proc.is_alive():
        return "  (stack unavailable)"
    try:
        os.kill(proc.pid, signal.SIGUSR1)
    except OSError:
        return "  (stack unavailable)"
    for _ in range(20):
        time.sleep(0.05)
        text = path.read_text(errors="replace") if path.exists() else ""
        if "File" in text:
            break
    frames = []
    for line in text.splitlines():
        if line.strip().startswith("File"):
            if "in _child" in line and "launch.py" in line:
                break  # below fn: spawn's own machinery, the same for every rank
            frames.append(line)
    return "\n".join(frames) if frames else "  (stack unavailable)"


def _innermost(stack: str) -> str:
    """'sleep_forever (tests/x.py:12)' from the first line of a faulthandler stack."""
    match = re.search(r'File "([^"]+)", line (\d+) in (\S+)', stack)
    return f"{match[3]} ({Path(match[1]).name}:{match[2]})" if match else "an unknown place"


def _child(env: dict[str, Any], settings: tuple, pipe: Connection, stack_path: str) -> None:
    """Body of every spawned rank: join the group, run fn, send back its result or traceback."""
    backend, group_timeout, threads, target, payload = settings
    rank = int(env["RANK"])
    stack_file = open(stack_path, "w")  # stays open: faulthandler writes to it on SIGUSR1
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    os.environ.update({k: str(v) for k, v in env.items()})
    torch.set_num_threads(threads)
    try:
        fn = _load_function(*target)
        args = pickle.loads(payload)
        init_distributed(backend, timeout=group_timeout)
        pipe.send(("started",))
        result = fn(rank, *args)
        pipe.send(("ok", pickle.dumps(result)))
    except BaseException as exc:  # every failure, even KeyboardInterrupt, must reach the parent
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        try:
            pipe.send(("error", text, _is_collateral(exc)))
        except OSError:
            pass
    finally:
        try:
            shutdown()
        except Exception:  # a broken group cannot be left more cleanly than this
            pass
        pipe.close()


def _is_collateral(exc: BaseException) -> bool:
    """Does this error look like a reaction to *another* rank failing (peer gone, timeout)?"""
    errors = tuple(
        getattr(dist, n) for n in ("DistBackendError", "DistNetworkError") if hasattr(dist, n)
    )
    text = str(exc).lower()
    return isinstance(exc, errors) or any(
        s in text for s in ("connection closed", "connection reset", "broken pipe", "timed out")
    )


def _load_function(module_name: str, filename: str, qualname: str) -> Callable[..., Any]:
    """Import `module_name.qualname`; a module loaded from a file path (a lesson) by its file."""
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            spec = importlib.util.spec_from_file_location(module_name, filename)
            if spec is None or spec.loader is None:
                raise
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # so pickled objects of this module resolve
            spec.loader.exec_module(module)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
