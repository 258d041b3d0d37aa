"""Pipeline schedules as pure functions: which stage runs which micro-batch's pass, in what order.

A model cut into S stages (stages.py) processes a batch split into M micro-batches. Every
stage must run, for every micro-batch i, a forward `("F", i)` and a backward `("B", i)`;
the only freedom is the *order* on each stage, and the order decides how long stages sit
idle waiting for their neighbours (the "bubble") and how many micro-batches' activations a
stage holds at once (memory). A schedule is one list of operations per stage; the executor
(executor.py) runs any of them, and `simulate` plays them with unit-time operations so the
bubble and the memory can be read off without any process (lesson 13 draws both).

* GPipe (Huang et al. 2019): all forwards, then all backwards. Bubble (S-1)/(M+S-1) of the
  step; every stage keeps all M micro-batches' activations until its backwards start.
* 1F1B (Narayanan et al. 2021, PipeDream-Flush): stage s runs S-s-1 warm-up forwards, then
  alternates one forward with one backward, then drains the backwards. The same bubble as
  GPipe, but a micro-batch's activations are freed as soon as its backward ran, so stage s
  holds at most min(M, S-s) of them, independent of M.
* ZB-H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism", section 3.1): the backward is
  split in two. `("B", i)` computes only the gradient of the stage's *input* — the one thing
  the previous stage waits for — and sends it upstream at once; `("W", i)` computes the
  gradient of the stage's *weights*, which nobody waits for, and is deferred (stage s lags
  its W's by s micro-batches) into what would have been idle time. With F = B = W the
  bubble shrinks from 1F1B's 3(S-1) time units to S-1 (a third), and the largest number of
  micro-batches any stage holds stays 1F1B's min(M, S) (held by stage 0 in both).

Each stage runs its forwards and its backwards in micro-batch order 0..M-1 in every schedule:
activations flow down the pipe and gradients up it as two ordered streams, so a receive
always matches the next message its neighbour sends (`check_schedule` enforces this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from minigpt.training.settings import PIPELINE_SCHEDULES

Op = tuple[str, int]  # ("F" | "B" | "W", micro-batch index)
Schedule = list[list[Op]]  # one ordered list of operations per stage
COMPUTE = ("F", "B", "W")


@dataclass(frozen=True)
class Event:
    """One interval of a stage's timeline: a pass (F, B, W) or communication (send, recv)."""

    stage: int
    op: str  # F | B | W | send | recv
    microbatch: int
    start: float  # seconds (measured) or time units (simulated) since the step began
    end: float


def _check_sizes(n_stages: int, n_microbatches: int) -> None:
    for name, value in (("n_stages", n_stages), ("n_microbatches", n_microbatches)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def gpipe_schedule(n_stages: int, n_microbatches: int) -> Schedule:
    """GPipe: every stage runs all M forwards, then all M backwards."""
    _check_sizes(n_stages, n_microbatches)
    ### BEGIN SOLUTION pipeline
    m = range(n_microbatches)
    return [[("F", i) for i in m] + [("B", i) for i in m] for _ in range(n_stages)]
    ### END SOLUTION


def one_f_one_b_schedule(n_stages: int, n_microbatches: int) -> Schedule:
    """1F1B: S-s-1 warm-up forwards on stage s, then one forward / one backward, then drain."""
    _check_sizes(n_stages, n_microbatches)
    ### BEGIN SOLUTION pipeline
    schedule = []
    for s in range(n_stages):
        warmup = min(n_stages - s - 1, n_microbatches)
        ops: list[Op] = [("F", i) for i in range(warmup)]
        for j in range(n_microbatches - warmup):  # steady state
            ops += [("F", warmup + j), ("B", j)]
        ops += [("B", i) for i in range(n_microbatches - warmup, n_microbatches)]  # cool-down
        schedule.append(ops)
    return schedule
    ### END SOLUTION


def zero_bubble_schedule(n_stages: int, n_microbatches: int) -> Schedule:
    """ZB-H1: backward split into B (input gradient) and W (weight gradient), W's deferred.

    Stage s runs min(M, S-s) forwards, then per micro-batch j: B_j, the deferred W_{j-s},
    the next forward; the W's still owed close the step. The last stage defers nothing;
    stage 0 defers S-1 W's, exactly the time it would otherwise wait at the end.
    """
    _check_sizes(n_stages, n_microbatches)
    schedule = []
    for s in range(n_stages):
        first = min(n_stages - s, n_microbatches)
        ops: list[Op] = [("F", i) for i in range(first)]
        weights_done = 0
        for j in range(n_microbatches):
            ops.append(("B", j))
            if j >= s:  # W lags B by s micro-batches on stage s
                ops.append(("W", j - s))
                weights_done += 1
            if j + first < n_microbatches:
                ops.append(("F", j + first))
        ops += [("W", i) for i in range(weights_done, n_microbatches)]
        schedule.append(ops)
    return schedule


SCHEDULES: dict[str, Callable[[int, int], Schedule]] = dict(
    zip(
        PIPELINE_SCHEDULES,
        (gpipe_schedule, one_f_one_b_schedule, zero_bubble_schedule),
        strict=True,
    )  # fmt: skip
)


def make_schedule(name: str, n_stages: int, n_microbatches: int) -> Schedule:
    """The schedule called `name` (gpipe | 1f1b | zb) for S stages and M micro-batches."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is unknown; use one of {', '.join(SCHEDULES)}")
    return SCHEDULES[name](n_stages, n_microbatches)


def splits_backward(schedule: Schedule) -> bool:
    """True when the backward is split into B (input gradient) and W (weight gradient)."""
    return any(op == "W" for ops in schedule for op, _ in ops)


def check_schedule(schedule: Schedule, n_microbatches: int) -> None:
    """Raise ValueError unless every stage runs each pass of each micro-batch exactly once,
    F before B before W, with forwards and backwards each in micro-batch order (the order
    the neighbours' messages arrive in)."""
    split = splits_backward(schedule)
    kinds = COMPUTE if split else COMPUTE[:2]
    for s, ops in enumerate(schedule):
        for kind in kinds:
            order = [i for op, i in ops if op == kind]
            if kind != "W" and order != list(range(n_microbatches)):
                raise ValueError(f"stage {s} runs {kind} in order {order}; it must be 0..M-1")
            if sorted(order) != list(range(n_microbatches)):
                raise ValueError(f"stage {s} runs {kind} for micro-batches {sorted(order)}")
        if len(ops) != len(kinds) * n_microbatches or any(op not in kinds for op, _ in ops):
            raise ValueError(f"stage {s} has unexpected operations: {ops}")
        position = {op: n for n, op in enumerate(ops)}
        for i in range(n_microbatches):
            chain = [position[(kind, i)] for kind in kinds]
            if chain != sorted(chain):
                raise ValueError(f"stage {s} runs micro-batch {i}'s passes out of order")


def simulate(schedule: Schedule, costs: Mapping[str, float] | None = None) -> list[Event]:
    """Play a schedule with fixed operation times and instant messages; returns the timeline.

    `costs` maps F, B, W to durations (default 1 each). In a schedule without W the B does
    the whole backward and costs B + W. An operation starts when its stage is free and its
    input exists: F_i on stage s needs F_i done on stage s-1, B_i needs B_i done on s+1.
    Raises ValueError if no stage can proceed (the order would deadlock).
    """
    cost = {"F": 1.0, "B": 1.0, "W": 1.0, **(costs or {})}
    if not splits_backward(schedule):
        cost["B"] = cost["B"] + cost["W"]
    n = len(schedule)
    done: dict[tuple[str, int, int], float] = {}  # (op, stage, micro-batch) -> end time
    position, free = [0] * n, [0.0] * n
    events: list[Event] = []
    while any(position[s] < len(schedule[s]) for s in range(n)):
        progressed = False
        for s in range(n):
            while position[s] < len(schedule[s]):
                op, i = schedule[s][position[s]]
                needs = {"F": ("F", s - 1, i), "B": ("B", s + 1, i)}.get(op)
                if needs is not None and not 0 <= needs[1] < n:
                    needs = None  # the first stage reads data; the last computes the loss
                if needs is not None and needs not in done:
                    break
                start = max(free[s], done[needs] if needs is not None else 0.0)
                free[s] = done[(op, s, i)] = start + cost[op]
                events.append(Event(s, op, i, start, free[s]))
                position[s] += 1
                progressed = True
        if not progressed:
            stuck = {s: schedule[s][p] for s, p in enumerate(position) if p < len(schedule[s])}
            raise ValueError(f"the schedule deadlocks: each stage waits forever at {stuck}")
    return events


def bubble_fraction(events: Sequence[Event]) -> float:
    """Idle share of the stages' time: 1 - (time spent in F/B/W) / (stages x step length).

    The same formula reads a simulated timeline and a measured one (executor.py), where
    waiting in a receive and the cost of sends count as idle.
    """
    compute = [e for e in events if e.op in COMPUTE]
    if not compute:
        raise ValueError("the timeline has no F, B or W events")
    n_stages = len({e.stage for e in events})
    span = max(e.end for e in events) - min(e.start for e in events)
    busy = sum(e.end - e.start for e in compute)
    return 1.0 - busy / (n_stages * span)


def textbook_bubble(n_stages: int, n_microbatches: int) -> float:
    """GPipe's and 1F1B's bubble, (S-1)/(M+S-1) of the step (Huang et al. 2019)."""
    return (n_stages - 1) / (n_microbatches + n_stages - 1)


def theoretical_bubble(name: str, n_stages: int, n_microbatches: int) -> float:
    """A schedule's bubble with F = B = W (unit-time simulation): the number to measure against."""
    return bubble_fraction(simulate(make_schedule(name, n_stages, n_microbatches)))


def peak_in_flight(ops: Sequence[Op], until: str = "last") -> int:
    """The most micro-batches one stage holds activations for at once, from its F until its
    last backward pass (`until="last"`: W when split, else B) or until its B (`until="B"`)."""
    split = any(op == "W" for op, _ in ops)
    release = "W" if split and until == "last" else "B"
    live = peak = 0
    for op, _ in ops:
        live += (op == "F") - (op == release)
        peak = max(peak, live)
    return peak
