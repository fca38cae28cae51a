"""Knee detection on constructed curves (clean steps, noisy steps, no step, drift, dips),
level matching, plateaus, size grids and the sysfs reader (fake tree)."""

import math
import random

import pytest

from hwlab.hierarchy import cpu
from hwlab.hierarchy import knees as K

KiB, MiB = 1024, 1024**2
CAPS = [32 * KiB, 1 * MiB, 32 * MiB]  # this machine's L1d, L2, L3
LAT = [1.9, 4.7, 16.0, 140.0]  # ns per level (L1, L2, L3, DRAM)


def grid(ppo=6, lo=4 * KiB, hi=256 * MiB):
    return cpu.size_grid(lo, hi, ppo)


def cliff(sizes, caps=CAPS, vals=LAT):
    """A cost that steps from level i to i+1 right after each capacity (LRU-like)."""
    return [vals[sum(s > c for c in caps)] for s in sizes]


def random_replacement(sizes, caps=CAPS, vals=LAT):
    """Hit rate c / w above each capacity: a gradual overflow (random replacement)."""
    out = []
    for w in sizes:
        v = vals[0]
        for c, nxt in zip(caps, vals[1:], strict=True):
            h = min(1.0, c / w)
            v = h * v + (1 - h) * nxt
        out.append(v)
    return out


def noisy(vals, rel, seed=0, outliers=()):
    rng = random.Random(seed)
    out = [v * math.exp(rng.gauss(0, rel)) for v in vals]
    for i in outliers:
        out[i] *= 3.0
    return out


def caps_of(knees):
    return [k.capacity_bytes for k in knees]


def assert_caps(found, want, tol=0.15):
    assert len(found) == len(want), (found, want)
    for f, w in zip(found, want, strict=True):
        assert abs(f / w - 1) <= tol, (f, w)


def test_clean_cliffs_latency():
    s = grid()
    ks = K.detect_knees(s, cliff(s), "latency")
    assert_caps(caps_of(ks), CAPS, tol=0.07)  # half a grid step at 6 per octave
    for k, c in zip(ks, CAPS, strict=True):
        assert k.lo_bytes <= c <= k.hi_bytes  # the bracketing interval holds the capacity
    assert [round(k.ratio, 2) for k in ks] == [
        round(b / a, 2) for a, b in zip(LAT, LAT[1:], strict=False)
    ]


def test_clean_cliffs_bandwidth():
    s = grid()
    bw = [400.0, 220.0, 150.0, 35.0]
    ks = K.detect_knees(s, cliff(s, vals=bw), "bandwidth")
    assert_caps(caps_of(ks), CAPS, tol=0.07)


def test_gradual_overflow():
    s = grid()
    ks = K.detect_knees(s, random_replacement(s), "latency")
    # the geometric midpoint of a gradual overflow lies past the capacity (hit rate c / w
    # reaches the midpoint at up to ~1.5 c): bounded here so a worse method fails
    assert len(ks) == 3
    for k, c in zip(ks, CAPS, strict=True):
        assert 0.9 * c <= k.capacity_bytes <= 1.6 * c


def test_noisy_cliffs_with_outliers():
    s = grid()
    vals = noisy(cliff(s), 0.04, seed=1, outliers=(5, 40, 70))
    assert_caps(caps_of(K.detect_knees(s, vals, "latency")), CAPS)


@pytest.mark.parametrize("seed", range(5))
def test_no_step_no_knee(seed):
    s = grid()
    vals = noisy([10.0] * len(s), 0.04, seed=seed)
    assert K.detect_knees(s, vals, "latency") == []
    assert K.detect_knees(s, vals, "bandwidth") == []


def test_slow_drift_is_not_a_knee():
    s = grid()
    drift = [5.0 * (w / s[0]) ** 0.05 for w in s]  # +3.5% per octave, 1.8x end to end
    assert K.detect_knees(s, drift, "latency") == []


def test_dip_that_recovers_is_not_a_level():
    s = grid()
    vals = [100.0] * len(s)
    for i in (30, 31):  # two consecutive slow points: survive the running median
        vals[i] = 40.0
    assert K.detect_knees(s, vals, "bandwidth") == []


def test_drift_then_cliff_places_the_cliff():
    """This machine's L2: latency drifts up inside the level, then the cliff at 1 MiB."""
    s = grid(lo=64 * KiB, hi=8 * MiB)
    vals = []
    for w in s:
        if w <= 256 * KiB:
            vals.append(4.7)
        elif w <= MiB:
            vals.append(4.7 * (w / (256 * KiB)) ** 0.4)  # 4.7 -> 8.2 over two octaves
        else:
            vals.append(16.0)
    (k,) = K.detect_knees(s, vals, "latency")
    assert abs(k.capacity_bytes / MiB - 1) <= 0.1


def test_input_validation():
    with pytest.raises(ValueError, match="kind"):
        K.detect_knees([1, 2, 3], [1, 2, 3], "speed")
    with pytest.raises(ValueError, match="positive"):
        K.detect_knees([1, 2, 3], [1, 0, 3], "latency")
    with pytest.raises(ValueError, match="sizes"):
        K.detect_knees([1, 2], [1, 2, 3], "latency")
    assert K.detect_knees([1, 2], [1, 2], "latency") == []


def test_match_levels_one_to_one_and_far():
    s = grid()
    ks = K.detect_knees(s, cliff(s), "latency")
    m = K.match_levels(ks, [("L1d", 32 * KiB), ("L2", MiB), ("L3", 32 * MiB), ("L4", 4 << 30)])
    assert m["L1d"] is ks[0] and m["L2"] is ks[1] and m["L3"] is ks[2]
    assert m["L4"] is None  # 7 octaves from any knee
    # an L3 knee at a third of the reported size is still the L3's (nearest, within 2.5)
    only = K.detect_knees(s, cliff(s, caps=[32 * KiB, MiB, 10 * MiB]), "latency")
    m = K.match_levels(only, [("L1d", 32 * KiB), ("L2", MiB), ("L3", 32 * MiB)])
    assert abs(m["L3"].capacity_bytes / (10 * MiB) - 1) < 0.1


def test_errors_and_plateau():
    assert K.rel_error(1.1, 1.0) == pytest.approx(0.1)
    assert K.rel_error(None, 1.0) is None
    k = K.Knee(33e3, 32e3, 36e3, 32e3, 36e3, 2.4, 5.0)
    assert K.error_interval(k, 32e3) == pytest.approx((0.0, 0.125))
    pl = K.plateau([1, 2, 3, 4, 5], [10, 11, 12, 13, 50], 1.5, 4.5, lo=[9] * 5, hi=[14] * 5)
    assert (pl.value, pl.n_points, pl.from_bytes, pl.to_bytes) == (12, 3, 2, 4)
    assert pl.lo == 9 and pl.hi == 14  # widened to the points' own intervals
    assert K.plateau([1, 2], [1, 2], 5, 9) is None


def test_running_median_keeps_edges():
    assert K.running_median([1, 9, 1, 1, 9]) == [1, 1, 1, 1, 9]


def test_size_grid():
    g = cpu.size_grid(4096, 1 << 30, 6, dense_until=128 << 20, sparse_points_per_octave=2)
    assert g[0] == 4096 and g[-1] == 1 << 30
    assert all(b > a for a, b in zip(g, g[1:], strict=False))
    assert all(x % 64 == 0 for x in g)
    for p in range(12, 31):  # every power of two is on the grid
        assert 1 << p in g
    dense = [x for x in g if x <= 128 << 20]
    assert len(dense) == 6 * 15 + 1
    assert len(g) - len(dense) == 6  # 2 per octave for the last 3 octaves
    with pytest.raises(ValueError):
        cpu.size_grid(0, 10, 4)


def test_split_aligned():
    parts = cpu.split(1000, 2)
    assert parts == [(0, 496), (496, 1000)]
    assert cpu.split(10, 4) == [(0, 10)]  # fewer than 8 elements per part: one part


def test_sysfs_parsers():
    assert cpu.parse_size("32K") == 32768
    assert cpu.parse_size("1024K\n") == 1 << 20
    assert cpu.parse_size("32M") == 32 << 20
    with pytest.raises(ValueError):
        cpu.parse_size("big")
    assert cpu.parse_cpu_list("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}


def _fake_sysfs(root, cpus, l3_shared):
    for c in cpus:
        for i, (lvl, typ, size, shared) in enumerate(
            [
                (1, "Data", "32K", str(c)),
                (1, "Instruction", "32K", str(c)),
                (2, "Unified", "1024K", str(c)),
                (3, "Unified", "32768K", l3_shared),
            ]
        ):
            d = root / f"cpu{c}" / "cache" / f"index{i}"
            d.mkdir(parents=True)
            (d / "level").write_text(f"{lvl}\n")
            (d / "type").write_text(f"{typ}\n")
            (d / "size").write_text(f"{size}\n")
            (d / "shared_cpu_list").write_text(f"{shared}\n")
            (d / "coherency_line_size").write_text("64\n")


def test_reported_levels_aggregate(tmp_path):
    _fake_sysfs(tmp_path, [0, 1], "0-1")
    lv = cpu.reported_levels([0, 1], 2, root=tmp_path)
    assert [(x["name"], x["size_bytes"], x["aggregate_bytes"]) for x in lv] == [
        ("L1d", 32 * KiB, 64 * KiB),
        ("L2", MiB, 2 * MiB),
        ("L3", 32 * MiB, 32 * MiB),  # one shared instance
    ]
    one = cpu.reported_levels([0, 1], 1, root=tmp_path)
    assert [x["aggregate_bytes"] for x in one] == [32 * KiB, MiB, 32 * MiB]
    assert cpu.read_caches(5, root=tmp_path) == []  # no such CPU: nothing reported
