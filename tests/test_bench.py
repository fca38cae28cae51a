"""The benchmark core (Device.bench) on the CPU, for real: do_bench's call order, the
untimed flush, the adaptive stopping rule, and the order-statistics CI it stops on."""

import itertools
import random
import time

import pytest

from hwlab import formulas as F
from hwlab.device import Device, _CpuMark


class _Logged(_CpuMark):
    __slots__ = ("log", "name")

    def __init__(self, log, name):
        super().__init__()
        self.log, self.name = log, name

    def record(self, *_):
        self.log.append(self.name)
        super().record()


class LoggingCpu(Device):
    """A real CPU device whose markers and synchronize also log what happened, in order."""

    def __init__(self):
        super().__init__("cpu")
        self.log: list[str] = []
        self._ids = itertools.count()

    def event_pair(self):
        i = next(self._ids)
        self.log.append(f"make{i}")
        return _Logged(self.log, f"start{i}"), _Logged(self.log, f"end{i}")

    def synchronize(self):
        self.log.append("sync")


def test_each_mode_follows_do_bench_order():
    """flush, start, call, end for every call; markers made up front; one sync at the end
    (the old order synchronized and recorded the start before the host had dispatched)."""
    dev = LoggingCpu()
    dev.bench(
        lambda: dev.log.append("fn"),
        iters=3,
        mode="each",
        flush=lambda: dev.log.append("flush"),
        min_repeats=1,
    )
    log = dev.log[dev.log.index("make0") :]
    assert log == [
        "make0",
        "make1",
        "make2",
        "sync",
        *(
            [
                "flush",
                "start0",
                "fn",
                "end0",
                "flush",
                "start1",
                "fn",
                "end1",
                "flush",
                "start2",
                "fn",
                "end2",
            ]
        ),
        "sync",
    ]


def test_loop_mode_is_one_region_per_repeat():
    dev = LoggingCpu()
    dev.bench(lambda: dev.log.append("fn"), iters=2, mode="loop", min_repeats=2)
    body = [x for x in dev.log if x != "sync" and not x.startswith("make")]
    assert body == ["start0", "fn", "fn", "end0", "start1", "fn", "fn", "end1"]


def test_flush_is_not_timed_and_times_are_real():
    dev = Device("cpu")
    s = dev.bench(lambda: time.sleep(0.004), iters=3, mode="each", flush=lambda: time.sleep(0.02))
    assert s.n == 3 and s.stopped == "fixed" and s.target_reached is None
    assert all(0.0035 < x < 0.015 for x in s.device_s)  # the 20 ms flush is not in it
    loop = dev.bench(lambda: time.sleep(0.002), iters=5, mode="loop", min_repeats=3)
    assert all(0.0018 < x < 0.01 for x in loop.device_s)
    assert all(d <= w * 1.001 for d, w in zip(loop.dispatch_s, loop.wall_s, strict=True))


def test_adaptive_stops_on_target_when_quiet():
    dev = Device("cpu")
    s = dev.bench(
        lambda: time.sleep(0.002),
        iters=2,
        min_repeats=5,
        target_spread=0.5,
        budget_s=5.0,
    )
    assert s.stopped == "target" and s.target_reached is True and s.n >= 5
    assert s.rel_ci <= 0.5


def test_adaptive_stops_on_budget_when_noisy_and_says_so():
    dev = Device("cpu")
    rng = random.Random(0)
    t0 = time.perf_counter()
    s = dev.bench(
        lambda: time.sleep(rng.choice([0.0005, 0.004])),
        iters=1,
        min_repeats=3,
        target_spread=0.001,
        budget_s=0.3,
    )
    assert time.perf_counter() - t0 < 1.0
    assert s.stopped == "budget" and s.target_reached is False
    st = s.stats()
    assert st["n_repeats"] == s.n and st["target_reached"] is False
    assert st["time_min_us"] <= st["time_ci_lo_us"] <= st["time_us"] <= st["time_ci_hi_us"]


def test_adaptive_max_repeats_and_bad_arguments():
    dev = Device("cpu")
    # alternating 0.5 ms / 3 ms calls: with n <= 4 the median's CI is [min, max], at least
    # (3 - 0.5) / 1.75 ~ 1.4 of the median wide, never within 1e-9: the repeats hit the cap
    waits = itertools.cycle([0.0005, 0.003])
    s = dev.bench(
        lambda: time.sleep(next(waits)), iters=1, min_repeats=2, max_repeats=4, target_spread=1e-9
    )
    assert s.stopped == "max_repeats" and s.n == 4 and s.target_reached is False
    with pytest.raises(ValueError, match="graph"):
        dev.bench(lambda: None, iters=1, mode="graph")
    with pytest.raises(ValueError, match="budget_s or max_repeats"):
        dev.bench(lambda: None, iters=1, target_spread=0.02)
    with pytest.raises(ValueError, match="mode"):
        dev.bench(lambda: None, iters=1, mode="sometimes")


def test_median_ci_order_statistics():
    assert F.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # n < 6: min..max
    xs = list(range(1, 21))
    assert F.median_ci(xs) == (6, 15)  # n = 20: ranks 6 and 15 (95.9% coverage)
    assert F.rel_ci([2.0] * 9) == 0.0
    assert F.rel_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0 / 3.0)
    with pytest.raises(ValueError):
        F.median_ci([])
