"""Pipeline schedules without processes: complete, deadlock-free, with the textbook bubble and
the activation-memory bounds of each paper, read off a unit-time simulation."""

from __future__ import annotations

import pytest

from minigpt.parallel.schedules import (
    SCHEDULES,
    bubble_fraction,
    check_schedule,
    gpipe_schedule,
    make_schedule,
    one_f_one_b_schedule,
    peak_in_flight,
    simulate,
    textbook_bubble,
    zero_bubble_schedule,
)

SIZES = [(s, m) for s in (1, 2, 3, 4, 8) for m in (1, 2, 3, 4, 5, 8, 13)]


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize(("stages", "micro"), SIZES)
def test_every_pass_once_in_a_deadlock_free_order(name: str, stages: int, micro: int) -> None:
    schedule = make_schedule(name, stages, micro)
    assert len(schedule) == stages
    check_schedule(schedule, micro)  # each op once, F < B < W, F and B in micro-batch order
    events = simulate(schedule)  # raises if some stage would wait forever
    kinds = 3 if name == "zb" else 2
    assert len(events) == stages * micro * kinds


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("stages", "micro"), SIZES)
def test_gpipe_and_1f1b_have_the_textbook_bubble(name: str, stages: int, micro: int) -> None:
    events = simulate(make_schedule(name, stages, micro))
    assert bubble_fraction(events) == pytest.approx(textbook_bubble(stages, micro), abs=1e-12)
    # and with a backward twice the forward (as in practice) the fraction is the same
    uneven = simulate(make_schedule(name, stages, micro), {"F": 1.0, "B": 1.5, "W": 0.5})
    assert bubble_fraction(uneven) == pytest.approx(textbook_bubble(stages, micro), abs=1e-12)


@pytest.mark.parametrize(("stages", "micro"), SIZES)
def test_zero_bubble_has_a_third_of_1f1bs_idle_time(stages: int, micro: int) -> None:
    zb = simulate(zero_bubble_schedule(stages, micro))
    span = max(e.end for e in zb)
    idle_per_stage = span - 3 * micro  # each stage works 3M units (F = B = W = 1)
    one_f_one_b = max(e.end for e in simulate(one_f_one_b_schedule(stages, micro))) - 3 * micro
    assert one_f_one_b == 3 * (stages - 1)
    if micro >= stages:  # Qi et al.: (S-1)(F + B - W) = S-1 units, (S-1)/(3M) of the ideal
        assert idle_per_stage == stages - 1
        assert idle_per_stage / (3 * micro) <= (stages - 1) / (3 * micro)
    else:  # too few micro-batches to fill the pipe: still less idle than 1F1B
        assert idle_per_stage <= one_f_one_b
    if stages > 1:
        assert idle_per_stage < one_f_one_b
        assert bubble_fraction(zb) < textbook_bubble(stages, micro)


@pytest.mark.parametrize(("stages", "micro"), SIZES)
def test_activation_memory_bounds(stages: int, micro: int) -> None:
    gpipe = gpipe_schedule(stages, micro)
    assert all(peak_in_flight(ops) == micro for ops in gpipe)  # all M alive on every stage
    for s, ops in enumerate(one_f_one_b_schedule(stages, micro)):
        assert peak_in_flight(ops) == min(micro, stages - s)
    zb = zero_bubble_schedule(stages, micro)
    for s, ops in enumerate(zb):
        assert peak_in_flight(ops, until="B") == min(micro, stages - s)  # awaiting B: 1F1B's
        assert peak_in_flight(ops) <= min(micro, stages)  # incl. deferred W's: 1F1B's stage 0
    assert max(peak_in_flight(ops) for ops in zb) == min(micro, stages)


def test_small_example_reads_like_the_papers() -> None:
    assert one_f_one_b_schedule(2, 3) == [
        [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)],
        [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)],
    ]
    assert zero_bubble_schedule(2, 3) == [
        [("F", 0), ("F", 1), ("B", 0), ("W", 0), ("F", 2), ("B", 1), ("W", 1), ("B", 2),
         ("W", 2)],
        [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("W", 0), ("F", 2), ("B", 2), ("W", 1),
         ("W", 2)],
    ]  # fmt: skip


def test_a_deadlocking_order_is_reported() -> None:
    bad = [[("F", 0), ("B", 0)], [("B", 0), ("F", 0)]]  # stage 1 wants B before its F
    with pytest.raises(ValueError, match="out of order"):
        check_schedule(bad, 1)
    with pytest.raises(ValueError, match="deadlocks"):
        simulate([[("B", 0), ("F", 0)], [("F", 0), ("B", 0)]])


def test_bad_sizes_and_names_are_one_line_errors() -> None:
    for stages, micro in ((0, 4), (2, 0), (2, 1.5)):
        with pytest.raises(ValueError, match="must be a positive integer") as info:
            make_schedule("1f1b", stages, micro)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="use one of gpipe, 1f1b, zb"):
        make_schedule("interleaved", 2, 4)
