"""The §1 table and figure from the hierarchy records (no torch, no measurement).

``tables/hierarchy.csv|md``: one row per level in the writeup's §1 shape — capacity as
detected (knee of the latency sweep on one thread; knee of the bandwidth sweep on the
run's threads) and as reported (sysfs / torch), the relative error, read and copy
bandwidth, latency (ns; cycles on a GPU), the method — beside the writeup's H100 row and
the catalog entry of the run's device. ``tables/hierarchy_points.csv``: every point of
every sweep. ``figures/hierarchy.png|svg``: bandwidth and latency by working set, log-log,
error bars from each point's 95% CI, detected knees (solid) and reported sizes (dashed).

Which sweep places which level: on a CPU the read, copy and chase sweeps all cross
L1d → L2 → L3 → DRAM (bandwidth knees at the threads' aggregate size, chase knees at one
instance's). On a GPU the L1/shared level comes from the per-SM re-read (``l1_read``) and
the chase, L2 and HBM from the grid-stride read / copy (L1 bypassed) and the chase.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab.hierarchy import knees as K
from hwlab.io import fmt_sig as num

GUARD = 2**0.25  # a plateau stays a quarter octave away from its boundaries
BEYOND = 2.0  # the memory level: points at least an octave past the last capacity

# The writeup's §1 row a measured level stands beside (config/hardware.yaml h100_sxm).
WRITEUP_ROW = {
    "L1d": "Shared memory (L1)",
    "L1/shared": "Shared memory (L1)",
    "L2": "L2 cache",
    "DRAM": "HBM3",
    "HBM": "HBM3",
    "Host link": "PCIe gen5 (host)",
    "Peer link": "NVLink 4 (cross-GPU)",
    "Registers": "Registers",
}

POINT_COLUMNS = ["sweep", "kind", "metric", "scope", "size_bytes", "value", "lo", "hi"]


def fmt_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "—"
    for unit, f in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= f:
            v = n / f
            return f"{num(v)} {unit}"
    return f"{n:.0f} B"


def fmt_bw(gbps: float | None) -> str:
    if gbps is None or (isinstance(gbps, float) and math.isnan(gbps)):
        return "—"
    return f"{num(gbps / 1e3)} TB/s" if gbps >= 1000 else f"{num(gbps)} GB/s"


def points_frame(memory: dict[str, Any]) -> pd.DataFrame:
    """Every point of every sweep: value = GB/s or ns, lo / hi = its 95% CI."""
    rows = []
    for name, sw in (memory.get("sweeps") or {}).items():
        m = sw["metric"]
        for p in sw["points"]:
            rows.append(
                {
                    "sweep": name,
                    "kind": sw["kind"],
                    "metric": m,
                    "scope": sw.get("scope"),
                    "size_bytes": p["size_bytes"],
                    "value": p[m],
                    "lo": p.get(f"{m}_lo", p[m]),
                    "hi": p.get(f"{m}_hi", p[m]),
                    "cycles": p.get("cycles"),
                    "rel_spread": p.get("rel_spread"),
                    "n_repeats": p.get("n_repeats"),
                }
            )
    return pd.DataFrame(rows, columns=[*POINT_COLUMNS, "cycles", "rel_spread", "n_repeats"])


def sweep_plan(memory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For each sweep: the reported (name, bytes) levels it can place, and whether it
    reaches the memory level (see the module docstring)."""
    levels = (memory.get("reported") or {}).get("levels") or []
    kind = memory.get("device_kind")
    plan: dict[str, dict[str, Any]] = {}
    for name, sw in (memory.get("sweeps") or {}).items():
        if kind == "cuda":
            if name == "l1_read":
                lv = [(lv["name"], lv["size_bytes"]) for lv in levels if lv["level"] == 1]
                plan[name] = {"levels": lv, "memory": False}
            elif name == "chase":
                lv = [(lv["name"], lv["size_bytes"]) for lv in levels]
                plan[name] = {"levels": lv, "memory": True}
            else:
                lv = [(lv["name"], lv["aggregate_bytes"]) for lv in levels if lv["level"] >= 2]
                plan[name] = {"levels": lv, "memory": True}
        else:
            key = "size_bytes" if sw["kind"] == "latency" else "aggregate_bytes"
            plan[name] = {"levels": [(lv["name"], lv[key]) for lv in levels], "memory": True}
    return plan


def analyse(memory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per sweep: its knees, each reported level's matched knee and error, and every level's
    plateau (the memory level included). Pure on the record."""
    plan = sweep_plan(memory)
    memname = (memory.get("memory") or {}).get("name", "memory")
    out: dict[str, dict[str, Any]] = {}
    for name, sw in (memory.get("sweeps") or {}).items():
        pts = sw["points"]
        if len(pts) < 3 or sw.get("kind") not in ("bandwidth", "latency"):
            continue
        m = sw["metric"]
        xs = [p["size_bytes"] for p in pts]
        vs = [p[m] for p in pts]
        lo = [p.get(f"{m}_lo", p[m]) for p in pts]
        hi = [p.get(f"{m}_hi", p[m]) for p in pts]
        knees = K.detect_knees(xs, vs, sw["kind"])
        levels = plan[name]["levels"]
        matched = K.match_levels(knees, levels)
        per_level: dict[str, dict[str, Any]] = {}
        bounds = []
        for lname, size in levels:
            kn = matched.get(lname)
            cap = kn.capacity_bytes if kn else size
            bounds.append((lname, size, kn, cap))
        prev = 0.0
        for lname, size, kn, cap in bounds:
            pl = K.plateau(xs, vs, prev * GUARD, (cap or math.inf) / GUARD, lo, hi)
            err = K.rel_error(kn.capacity_bytes if kn else None, size)
            per_level[lname] = {
                "reported_bytes": size,
                "knee": kn.as_dict() if kn else None,
                "error": err,
                "error_interval": K.error_interval(kn, size) if kn and size else None,
                "plateau": pl.as_dict() if pl else None,
            }
            prev = cap or prev
        if plan[name]["memory"]:
            pl = K.plateau(xs, vs, prev * BEYOND, math.inf, lo, hi)
            per_level[memname] = {
                "reported_bytes": (memory.get("memory") or {}).get("bytes"),
                "knee": None,
                "error": None,
                "error_interval": None,
                "plateau": pl.as_dict() if pl else None,
            }
        unmatched = [k.as_dict() for k in knees if k not in matched.values()]
        out[name] = {
            "kind": sw["kind"],
            "metric": m,
            "scope": sw.get("scope"),
            "knees": [k.as_dict() for k in knees],
            "levels": per_level,
            "unmatched_knees": unmatched,
        }
    return out


def _plateau_value(an: dict, sweep: str, level: str) -> tuple[float | None, ...]:
    pl = (an.get(sweep, {}).get("levels", {}).get(level) or {}).get("plateau")
    return (pl["value"], pl["lo"], pl["hi"]) if pl else (None, None, None)


def _cycles(memory: dict[str, Any], an: dict, level: str) -> float | None:
    pl = (an.get("chase", {}).get("levels", {}).get(level) or {}).get("plateau")
    pts = ((memory.get("sweeps") or {}).get("chase") or {}).get("points") or []
    if not pl:
        return None
    cyc = [
        p["cycles"]
        for p in pts
        if p.get("cycles") and pl["from_bytes"] <= p["size_bytes"] <= pl["to_bytes"]
    ]
    return F.median(cyc) if cyc else None


def link_rows(link: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Host link and peer link rows from the link record (skipped: the reason)."""
    if link is None:
        return []
    rows = []
    if link.get("status") != "ok":
        for lv in ("Host link", "Peer link"):
            rows.append({"level": lv, "status": link.get("status"), "reason": link.get("reason")})
        return rows
    cases = link.get("cases") or {}

    def summary(pts):
        big = max(pts, key=lambda p: p["gbps"])
        small = min(pts, key=lambda p: p["size_bytes"])
        return big, small

    best = {}
    for name, pts in cases.items():
        if pts:
            best[name] = summary(pts)
    if best:
        name = max(best, key=lambda n: best[n][0]["gbps"])
        big, small = best[name]
        rows.append(
            {
                "level": "Host link",
                "status": "ok",
                "reason": None,
                "read_gbps": big["gbps"],
                "read_gbps_lo": big["gbps_lo"],
                "read_gbps_hi": big["gbps_hi"],
                "latency_ns": small["time_us"] * 1e3,
                "method": "torch copy_ "
                + ", ".join(f"{n} {num(best[n][0]['gbps'])} GB/s" for n in sorted(best))
                + f"; latency = one {small['size_bytes']} B copy ({name})",
            }
        )
    p2p = link.get("p2p") or {}
    if p2p.get("status") == "ok" and p2p.get("cases"):
        sums = {n: summary(pts) for n, pts in p2p["cases"].items() if pts}
        name = max(sums, key=lambda n: sums[n][0]["gbps"])
        big, small = sums[name]
        rows.append(
            {
                "level": "Peer link",
                "status": "ok",
                "reason": None,
                "read_gbps": big["gbps"],
                "read_gbps_lo": big["gbps_lo"],
                "read_gbps_hi": big["gbps_hi"],
                "latency_ns": small["time_us"] * 1e3,
                "method": f"torch copy_ between GPUs ({name}); peer access "
                f"{p2p.get('peer_access')}",
            }
        )
    else:
        rows.append(
            {
                "level": "Peer link",
                "status": p2p.get("status", "skipped"),
                "reason": p2p.get("reason"),
            }
        )
    return rows


def _writeup_rows(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["level"]: r for r in (catalog.get("h100_sxm") or {}).get("hierarchy") or []}


def _catalog_cells(spec: dict[str, Any] | None, level: str) -> tuple[str, str]:
    """(capacity, bandwidth) the catalog gives for the run's device at ``level``."""
    if not spec:
        return "—", "—"
    link = (spec.get("host_link") or {}) if level == "Host link" else {}
    peer = (spec.get("interconnect") or {}) if level == "Peer link" else {}
    if level in ("L1/shared", "L1d") and spec.get("smem_per_sm_kb"):
        return f"{spec['smem_per_sm_kb']} KiB / SM", "—"
    if level == "L2" and spec.get("l2_mb"):
        return f"{spec['l2_mb']} MB", "—"
    if level in ("HBM", "DRAM"):
        return f"{spec.get('memory_gb')} GB", fmt_bw(spec.get("mem_bw_gbps"))
    if link:
        return "—", f"{link.get('gbps_bidir')} GB/s bidir ({link.get('name')})"
    if peer:
        return "—", f"{peer.get('gbps_bidir')} GB/s bidir ({peer.get('name')})"
    return "—", "—"


def hierarchy_rows(
    memory: dict[str, Any],
    link: dict[str, Any] | None,
    catalog: dict[str, Any],
    spec: dict[str, Any] | None = None,
    an: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The §1 table as rows (pure on the records and the catalog); ``an`` is
    :func:`analyse` of ``memory`` where the caller has it already (else computed here)."""
    writeup = _writeup_rows(catalog)
    rows: list[dict[str, Any]] = []
    if memory.get("status") != "ok":
        rows.append(
            {
                "level": "caches and memory",
                "status": memory.get("status"),
                "reason": memory.get("reason"),
            }
        )
    else:
        an = an if an is not None else analyse(memory)
        reported = (memory.get("reported") or {}).get("levels") or []
        memname = (memory.get("memory") or {}).get("name", "memory")
        cuda = memory.get("device_kind") == "cuda"
        bw_sweeps = [s for s in ("read", "copy") if s in an]
        for lv in [*reported, {"name": memname, "level": None}]:
            name = lv["name"]
            lat = an.get("chase", {}).get("levels", {}).get(name) or {}
            bw_sweep = "l1_read" if cuda and lv.get("level") == 1 else (bw_sweeps or [None])[0]
            bw = an.get(bw_sweep, {}).get("levels", {}).get(name) or {} if bw_sweep else {}
            r_v, r_lo, r_hi = _plateau_value(an, bw_sweep, name) if bw_sweep else (None,) * 3
            c_v, c_lo, c_hi = (
                _plateau_value(an, "copy", name)
                if not (cuda and lv.get("level") == 1)
                else (None,) * 3
            )
            l_v, l_lo, l_hi = _plateau_value(an, "chase", name)
            lk, bk = lat.get("knee"), bw.get("knee")
            row = {
                "level": name,
                "status": "ok",
                "reason": None,
                "reported_bytes": lv.get("size_bytes")
                if lv.get("level")
                else lat.get("reported_bytes"),
                "aggregate_bytes": lv.get("aggregate_bytes"),
                "reported_source": lv.get("source") or (memory.get("reported") or {}).get("source"),
                "latency_knee_bytes": lk["capacity_bytes"] if lk else None,
                "latency_knee_lo": lk["lo_bytes"] if lk else None,
                "latency_knee_hi": lk["hi_bytes"] if lk else None,
                "latency_knee_error_pct": 100 * lat["error"]
                if lat.get("error") is not None
                else None,
                "bandwidth_sweep": bw_sweep,
                "bandwidth_knee_bytes": bk["capacity_bytes"] if bk else None,
                "bandwidth_knee_lo": bk["lo_bytes"] if bk else None,
                "bandwidth_knee_hi": bk["hi_bytes"] if bk else None,
                "bandwidth_knee_error_pct": 100 * bw["error"]
                if bw.get("error") is not None
                else None,
                "bandwidth_reported_bytes": bw.get("reported_bytes"),
                "read_gbps": r_v,
                "read_gbps_lo": r_lo,
                "read_gbps_hi": r_hi,
                "copy_gbps": c_v,
                "copy_gbps_lo": c_lo,
                "copy_gbps_hi": c_hi,
                "latency_ns": l_v,
                "latency_ns_lo": l_lo,
                "latency_ns_hi": l_hi,
                "latency_cycles": _cycles(memory, an, name) if cuda else None,
                "method": _method(memory, name, bw_sweep),
            }
            rows.append(row)
    rows += link_rows(link)
    rows.append(
        {
            "level": "Registers",
            "status": "not measured",
            "reason": "no register-level kernel (a register file is not addressable by "
            "working set); the writeup's figure is quoted beside",
        }
    )
    for row in rows:
        w = writeup.get(WRITEUP_ROW.get(row["level"], ""), {})
        row["writeup_level"] = w.get("level")
        row["writeup_capacity"] = w.get("capacity")
        row["writeup_bandwidth"] = w.get("bandwidth")
        row["writeup_latency"] = w.get("latency")
        cap, bwc = _catalog_cells(spec, row["level"])
        row["catalog_capacity"], row["catalog_bandwidth"] = cap, bwc
    return rows


def _method(memory: dict[str, Any], level: str, bw_sweep: str | None) -> str:
    sw = memory.get("sweeps") or {}
    thr = memory.get("threads")
    if memory.get("device_kind") == "cuda":
        if bw_sweep == "l1_read":
            return "Triton per-SM re-read (L1); 1-warp Triton pointer chase"
        return "Triton grid-stride read/copy (.cg: L1 bypassed); 1-warp Triton pointer chase"
    kernels = "/".join(k for k in ("read", "copy") if k in sw)
    return f"numba {kernels} on {thr} threads; numba pointer chase on 1 thread"


COLUMNS = [
    "level",
    "status",
    "reason",
    "reported_bytes",
    "aggregate_bytes",
    "reported_source",
    "latency_knee_bytes",
    "latency_knee_lo",
    "latency_knee_hi",
    "latency_knee_error_pct",
    "bandwidth_sweep",
    "bandwidth_knee_bytes",
    "bandwidth_knee_lo",
    "bandwidth_knee_hi",
    "bandwidth_knee_error_pct",
    "bandwidth_reported_bytes",
    "read_gbps",
    "read_gbps_lo",
    "read_gbps_hi",
    "copy_gbps",
    "copy_gbps_lo",
    "copy_gbps_hi",
    "latency_ns",
    "latency_ns_lo",
    "latency_ns_hi",
    "latency_cycles",
    "method",
    "writeup_level",
    "writeup_capacity",
    "writeup_bandwidth",
    "writeup_latency",
    "catalog_capacity",
    "catalog_bandwidth",
]


def _err(v: float | None) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:+.0f}%"


def _lat(row: dict[str, Any]) -> str:
    ns = row.get("latency_ns")
    if ns is None or pd.isna(ns):
        return "—"
    s = f"{num(ns / 1e3)} µs" if ns >= 1e4 else f"{num(ns)} ns"
    cyc = row.get("latency_cycles")
    if cyc is not None and not pd.isna(cyc):
        s += f" ({cyc:.0f} cycles)"
    return s


def markdown(rows: list[dict[str, Any]], memory: dict[str, Any], device: dict[str, Any]) -> str:
    """The two §1 tables: this machine, and it beside the writeup's H100 row and catalog."""
    name = device.get("name") or memory.get("device_name")
    lines = [f"### §1 — Memory hierarchy of {name} (measured)", ""]
    lines += [
        "| Level | Capacity detected (latency knee) | Capacity detected (bandwidth knee) "
        "| Capacity reported | Read bandwidth | Copy bandwidth | Latency | Method |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") not in ("ok",):
            why = str(r.get("reason") or "").replace("|", "/")
            lines.append(f"| {r['level']} | {r.get('status')}: {why} | | | | | | |")
            continue
        lk = (
            f"{fmt_bytes(r['latency_knee_bytes'])} ({_err(r['latency_knee_error_pct'])})"
            if r.get("latency_knee_bytes")
            else "no knee"
        )
        bk = (
            f"{fmt_bytes(r['bandwidth_knee_bytes'])} ({_err(r['bandwidth_knee_error_pct'])})"
            if r.get("bandwidth_knee_bytes")
            else "no knee"
        )
        if r.get("level") in ("DRAM", "HBM"):
            lk = bk = "— (last level)"
        rep = fmt_bytes(r.get("reported_bytes"))
        if r.get("aggregate_bytes") and r["aggregate_bytes"] != r.get("reported_bytes"):
            rep += f" ({fmt_bytes(r['aggregate_bytes'])} for the threads' caches)"
        lines.append(
            f"| {r['level']} | {lk} | {bk} | {rep} | {fmt_bw(r.get('read_gbps'))} | "
            f"{fmt_bw(r.get('copy_gbps'))} | {_lat(r)} | {r.get('method') or ''} |"
        )
    lines += [
        "",
        "- Error in parentheses: detected vs reported; the latency knee (one thread) is "
        "compared with one cache instance, the bandwidth knee (the run's threads, each on its "
        "own part) with the sum of the instances those threads use.",
        "- Bandwidth and latency of a level: median of the sweep's points on its plateau "
        "(a quarter octave inside the detected or, without a knee, the reported boundaries); "
        "the memory level: points an octave or more past the last cache.",
        "",
        "#### Beside the writeup's H100 row and the catalog",
        "",
        "| Level (this run) | Bandwidth (read) | Latency | Writeup level (H100 SXM5) | Writeup "
        "capacity | Writeup bandwidth | Writeup latency | Catalog capacity (this device) | "
        "Catalog bandwidth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['level']} | {fmt_bw(r.get('read_gbps'))} | {_lat(r)} | "
            f"{r.get('writeup_level') or '—'} | {r.get('writeup_capacity') or '—'} | "
            f"{r.get('writeup_bandwidth') or '—'} | {r.get('writeup_latency') or '—'} | "
            f"{r.get('catalog_capacity') or '—'} | {r.get('catalog_bandwidth') or '—'} |"
        )
    m = memory.get("method") or {}
    if memory.get("status") == "ok" and memory.get("reason"):
        lines += ["", f"- Sweeps not measured: {memory['reason']}"]
    ref = ((memory.get("sweeps") or {}).get("torch_reference") or {}).get("reference")
    hbm = next((r for r in rows if r["level"] == "HBM"), None)
    if ref and hbm and hbm.get("read_gbps"):
        best = max(ref["sum_gbps"], ref["copy_gbps"])
        lines.append(
            f"- HBM read (Triton, {fmt_bw(hbm['read_gbps'])}) against plain torch over "
            f"{fmt_bytes(ref['bytes'])}: x.sum() {fmt_bw(ref['sum_gbps'])}, y.copy_(x) "
            f"{fmt_bw(ref['copy_gbps'])}: {100 * hbm['read_gbps'] / best:.0f}% of the best "
            "(goal: within 5%)."
        )
    if memory.get("status") == "ok":
        lines += [
            "",
            f"- Timing: {m.get('timer')}; {m.get('bench')}; {m.get('compiler')}; "
            f"{m.get('points_per_octave', '')} points per octave."
            + (
                f" Buffer {fmt_bytes(m.get('buffer_bytes'))}, "
                f"{100 * m['huge_page_fraction']:.0f}% backed by transparent huge pages."
                if m.get("huge_page_fraction") is not None
                else ""
            ),
        ]
    return "\n".join(lines) + "\n"


def plot(memory: dict[str, Any], an: dict[str, Any], png: str, svg: str) -> None:
    """Bandwidth and latency by working set, log-log, knees and reported sizes marked."""
    from hwlab import figures

    fig, axes = figures.new(1, 2, width=5.6, height=4.2)
    ax_bw, ax_lat = axes[0]
    sweeps = memory.get("sweeps") or {}
    if memory.get("status") != "ok" or not sweeps:
        for ax in (ax_bw, ax_lat):
            ax.axis("off")
        ax_bw.text(
            0,
            0.5,
            f"hierarchy: {memory.get('status')}: {memory.get('reason')}",
            fontsize=8,
            transform=ax_bw.transAxes,
            wrap=True,
        )
        figures.save(fig, png, svg)
        return
    colors = {"read": "tab:blue", "copy": "tab:green", "l1_read": "tab:purple", "chase": "tab:red"}
    for name, sw in sweeps.items():
        if not sw.get("points") or sw.get("kind") not in ("bandwidth", "latency"):
            continue
        ax = ax_bw if sw["kind"] == "bandwidth" else ax_lat
        m = sw["metric"]
        xs = [p["size_bytes"] for p in sw["points"]]
        ys = [p[m] for p in sw["points"]]
        lo = [max(0.0, p[m] - p.get(f"{m}_lo", p[m])) for p in sw["points"]]
        hi = [max(0.0, p.get(f"{m}_hi", p[m]) - p[m]) for p in sw["points"]]
        ax.errorbar(
            xs,
            ys,
            yerr=[lo, hi],
            fmt=".-",
            ms=3,
            lw=1,
            capsize=1.5,
            color=colors.get(name),
            label=f"{name} ({sw.get('scope')})",
        )
        a = an.get(name) or {}
        for lname, lv in (a.get("levels") or {}).items():
            kn = lv.get("knee")
            if kn:
                ax.axvline(kn["capacity_bytes"], color=colors.get(name), lw=0.8, alpha=0.7)
                ax.annotate(
                    f"{lname} knee {fmt_bytes(kn['capacity_bytes'])}",
                    (kn["capacity_bytes"], 0.97),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=6,
                    color=colors.get(name),
                )
    for lv in (memory.get("reported") or {}).get("levels") or []:
        for ax, key in ((ax_lat, "size_bytes"), (ax_bw, "aggregate_bytes")):
            v = lv.get(key) or lv.get("size_bytes")
            if v:
                ax.axvline(v, color="0.4", lw=0.8, ls="--")
                ax.annotate(
                    f"{lv['name']} reported {fmt_bytes(v)}",
                    (v, 0.03),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    ha="left",
                    va="bottom",
                    fontsize=6,
                    color="0.3",
                )
    for ax in (ax_bw, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("working set (bytes)")
        ax.legend(fontsize=6, loc="best")
    ax_bw.set_ylabel("GB/s")
    ax_bw.set_title("bandwidth by working set")
    ax_lat.set_ylabel("ns per dependent load")
    ax_lat.set_title("latency by working set (pointer chase)")
    figures.save(fig, png, svg)


def write_hierarchy_tables(
    *,
    memory_json: str,
    link_json: str,
    device_json: str,
    catalog: str,
    csv: str,
    md: str,
    points_csv: str,
    analysis_json: str,
    png: str,
    svg: str,
    hardware_json: str | None = None,
) -> list[dict[str, Any]]:
    """Snakemake entry of the ``hierarchy_table`` job (the catalog match from
    ``hardware_json``, see :func:`hwlab.records.read_device`)."""
    from hwlab import catalog as cat
    from hwlab.io import write_json, write_table, write_text
    from hwlab.records import read, read_device

    memory, link = read(memory_json, "hierarchy_memory"), read(link_json, "hierarchy_link")
    device = read_device(device_json, hardware_json)
    entries = cat.load(catalog)
    an = analyse(memory) if memory.get("status") == "ok" else {}
    rows = hierarchy_rows(memory, link, entries, device.get("spec"), an)
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    write_table(df, csv)
    write_text(md, markdown(rows, memory, device))
    write_table(points_frame(memory), points_csv)
    write_json(
        analysis_json,
        {"status": memory.get("status"), "reason": memory.get("reason"), "sweeps": an},
    )
    plot(memory, an, png, svg)
    return rows
