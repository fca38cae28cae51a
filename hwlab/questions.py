"""§3, §5 and §8 of the writeup answered from a run: pure functions, headlines, sections.

- **§3 "FP8 is exactly 2× BF16"** (:func:`precision_ratio_finding`): where the GEMM sweep
  has both dtypes of the run's low-precision pair, the measured TFLOP/s ratio at the
  compute-bound end (largest common M: the claim) and at the memory-bound end (smallest
  M: a bytes ratio, reported), beside the writeup's 2× and the catalog's peak ratio. The
  pair: fp8 / bf16 on a GPU (tensor cores); on a CPU bf16 / fp32 where the CPU has a bf16
  matrix path — a matrix engine (AMX) or AVX512-BF16 dot products, whose VDPBF16PS does two
  bf16 products per fp32 lane, exactly the writeup's "halve the bit-width, twice the
  elements" — and not evaluable otherwise (:func:`precision_pair`, the one place that reads
  the device's ISA from ``device.json``). Holds when the compute-end ratio's interval lies
  within RATIO_TOLERANCE (±10%) of 2.
- **§5 prefill MFU** (:func:`prefill_flops`, :func:`prefill_mfu_columns`,
  :func:`prefill_mfu_finding`): achieved FLOP/s of each batch's prefill over the dense peak
  (spec when the catalog knows the device, else the run's measured ceiling). FLOPs = 2 x the
  matmul parameters x prompt tokens x batch (the transformer layers; the embedding lookup
  is not a matmul and the lm_head runs on the last position only, as ``logits_to_keep=1``
  does) + causal attention 2 x batch x layers x heads x head_dim x prompt². Without the
  architecture (a reference run) the issue's 2 x parameters x tokens is used. The writeup's
  "3B ends up around 2–5% MFU" is checked when the model is 3B-class (2–4.5 B parameters).
- **§8** (:func:`section8`): (1) the napkin decode step for this device and model beside
  the measured TPOT; (2) GPU-Util, the existing headline; (3) per model of the writeup's
  parallelism table, the smallest TP degree at which AllReduce time is at least
  COMM_MEANINGFUL (10%) of a forward pass (:func:`tp_fraction`); (4) tokens/s per watt at
  batch 1 for every catalog device that fits 3B / 70B / 405B (:func:`per_watt_rows`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from hwlab import formulas as F
from hwlab import headlines as H
from hwlab.io import finite as _num
from hwlab.io import fmt_sig as num

WRITEUP_RATIO = 2.0
RATIO_TOLERANCE = 0.10
MFU_BAND = (2.0, 5.0)  # the writeup's "around 2–5%"
THREE_B = (2.0e9, 4.5e9)  # parameters of a "3B" model
COMM_MEANINGFUL = 0.10  # AllReduce share of a forward pass that counts as meaningful
TP_DEGREES = (2, 4, 8, 16, 32, 64)
COST_MODELS_B = (3, 70, 405)
BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}

# ======================================================================================
# §3 — FP8 vs BF16 (or bf16 vs fp32 on a CPU with a bf16 matrix path)
# ======================================================================================


def cpu_isa(device: dict[str, Any]) -> tuple[str | None, set[str]]:
    """(matrix engine, ISA flags) as device.json records them (``cpu_matrix_engine``, from
    :func:`hwlab.device.cpu_matrix_engine`); the keys are read here only."""
    me = device.get("cpu_matrix_engine") or {}
    engine = "AMX" if me.get("amx") else None
    flags = {str(f) for f in [*(me.get("amx_flags") or []), *(me.get("bf16_dot_product") or [])]}
    return engine, flags


def precision_pair(device: dict[str, Any]) -> dict[str, Any]:
    """The low-precision pair §3 is checked on for this device, or why there is none."""
    if device.get("kind") == "cuda":
        return {"fast": "fp8", "base": "bf16", "path": "tensor cores", "reason": None}
    engine, flags = cpu_isa(device)
    if engine or "amx_bf16" in flags:
        return {
            "fast": "bf16",
            "base": "fp32",
            "path": f"matrix engine {engine or 'AMX'}",
            "reason": None,
        }
    if "cpu_matrix_engine" not in device:
        why = "device.json records no CPU matrix engine (cpu_matrix_engine)"
    elif flags:
        why = (
            f"this CPU has no matrix engine ({', '.join(sorted(flags))}: bf16 dot-product "
            "instructions on the vector units): the writeup's 2x is a tensor-core / "
            "matrix-engine claim (halved width, same tile area), not evaluable here"
        )
    else:
        why = "this CPU has no matrix engine and no bf16 instructions: a bf16 GEMM converts "
        why += "to fp32 and would measure the conversion, not a halved-width unit"
    return {"fast": None, "base": None, "path": None, "reason": why}


def _series(roof: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """One dtype's ok points (:func:`hwlab.headlines.roofline_series`), warm L2 where the
    sweep has it, else its one L2 mode, sorted by M."""
    ok = roof[(roof["dtype"] == dtype) & (roof["status"] == "ok")]
    if ok.empty:
        return ok
    l2 = "warm" if (ok["l2"] == "warm").any() else str(ok["l2"].iloc[0])
    return H.roofline_series(roof, dtype, l2).sort_values("M")


def ratio_interval(fast: pd.Series, base: pd.Series) -> tuple[float, float, float]:
    """(ratio, lo, hi) of two roofline points' TFLOP/s: each point's (lo, hi) is its
    TFLOP/s at its slowest and fastest repeat (:func:`hwlab.headlines.rng`), so the ratio
    lies in [fast lo / base hi, fast hi / base lo]."""
    f_lo, f_hi = H.rng(fast, "tflops")
    b_lo, b_hi = H.rng(base, "tflops")
    return float(fast["tflops"]) / float(base["tflops"]), f_lo / b_hi, f_hi / b_lo


def precision_ratio_finding(
    roofline: pd.DataFrame | None, device: dict[str, Any], spec: dict[str, Any] | None = None
) -> H.Finding:
    """§3's "exactly 2×" on the run's GEMM sweep (see the module docstring)."""
    key, title = "precision_ratio", "Halving the bit width doubles matmul throughput (§3)"
    th = {"writeup_ratio": WRITEUP_RATIO, "tolerance": RATIO_TOLERANCE}
    pair = precision_pair(device)
    if pair["fast"] is None:
        dts = sorted(set(roofline["dtype"])) if roofline is not None and "dtype" in roofline else []
        swept = f" (the GEMM sweep has {', '.join(dts)})" if dts else ""
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            f"Not evaluable here: {pair['reason']}{swept}.",
            {"pair": pair},
            th,
        )
    fast, base = pair["fast"], pair["base"]
    roof = roofline if roofline is not None else pd.DataFrame(columns=["dtype", "status"])
    missing = []
    for dt in (fast, base):
        got = roof[roof["dtype"] == dt] if "dtype" in roof else roof
        if got.empty:
            missing.append(f"the GEMM sweep has no {dt} points (add {dt} to gemm.dtypes)")
        elif not (got["status"] == "ok").any():
            missing.append(f"{dt}: {got['status'].iloc[0]}: {got['reason'].iloc[0]}")
    if missing:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            f"Not evaluable here ({fast} vs {base}, {pair['path']}): " + "; ".join(missing) + ".",
            {"pair": pair},
            th,
        )
    fs, bs = _series(roof, fast), _series(roof, base)
    common = sorted(set(fs["M"]) & set(bs["M"]))
    if not common:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            f"Not evaluable here: no M measured in both {fast} and {base}.",
            {"pair": pair},
            th,
        )
    ends = {}
    for label, m in (("compute-bound end", common[-1]), ("memory-bound end", common[0])):
        r, lo, hi = ratio_interval(fs[fs["M"] == m].iloc[0], bs[bs["M"] == m].iloc[0])
        ends[label] = {"M": int(m), "ratio": r, "lo": lo, "hi": hi}
    from hwlab.catalog import peak_tflops

    cat = None
    if spec and peak_tflops(spec, fast) and peak_tflops(spec, base):
        cat = peak_tflops(spec, fast) / peak_tflops(spec, base)
    c = ends["compute-bound end"]
    band = (WRITEUP_RATIO * (1 - RATIO_TOLERANCE), WRITEUP_RATIO * (1 + RATIO_TOLERANCE))
    verdict = H.all_of(
        H.against(c["lo"], c["hi"], band[0], above=True),
        H.against(c["lo"], c["hi"], band[1], above=False),
    )
    m_end = ends["memory-bound end"]
    text = (
        f"{fast} vs {base} ({pair['path']}): at the compute-bound end (M={c['M']}) {fast} "
        f"runs {num(c['ratio'])}× {base} [{num(c['lo'])}, {num(c['hi'])}]; at the memory-bound "
        f"end (M={m_end['M']}) {num(m_end['ratio'])}× (bytes moved, not the matrix "
        f"unit, set that end). The writeup says exactly {WRITEUP_RATIO:g}×"
        + (f"; the catalog's dense peaks give {num(cat)}×" if cat else "")
        + ". "
        + {
            H.HOLDS: f"The measured ratio is within ±{100 * RATIO_TOLERANCE:.0f}% of 2×.",
            H.FAILS: f"The measured ratio is not within ±{100 * RATIO_TOLERANCE:.0f}% of 2×.",
            H.INCONCLUSIVE: "The points' spread straddles the tolerance: too noisy to judge.",
        }.get(verdict, "")
    )
    return H.Finding(key, title, verdict, text, {"pair": pair, "ends": ends, "catalog": cat}, th)


# ======================================================================================
# §5 — prefill MFU
# ======================================================================================


def prefill_flops(
    param_count: float,
    batch: int,
    prompt_len: int,
    *,
    layers: int | None = None,
    heads: int | None = None,
    head_dim: int | None = None,
    embedding_params: float = 0.0,
    tied: bool = True,
    lm_head_positions: int = 1,
) -> float:
    """FLOPs of one prefill (see the module docstring). ``embedding_params`` (vocab x
    hidden): not a matmul per token; when given, the lm_head (same size) runs on
    ``lm_head_positions`` positions per sequence. Attention is added when layers, heads and
    head_dim are known (causal: half of the prompt² score matrix, for QKᵀ and for PV).
    ``tied``: the lm_head shares the embedding's weights (counted once in param_count)."""
    tokens = batch * prompt_len
    # parameters outside the layers: the embedding, and the lm_head unless it is tied to it
    outside = embedding_params * (1 if tied else 2)
    linear = 2.0 * (param_count - outside) * tokens
    if embedding_params:
        linear += 2.0 * embedding_params * batch * lm_head_positions
    attention = 0.0
    if layers and heads and head_dim:
        attention = 2.0 * batch * layers * heads * head_dim * prompt_len**2
    return linear + attention


def mfu_pct(flops: float, seconds: float, peak_tflops: float | None) -> float | None:
    """Achieved FLOP/s as % of the peak."""
    if not peak_tflops or not seconds:
        return None
    return 100.0 * F.tflops(flops, seconds) / peak_tflops


def mfu_peak(peaks: dict[str, Any], dtype: str) -> tuple[float | None, str]:
    """The dense peak MFU is measured against: spec if the catalog knows the device, else
    the run's measured ceiling (peaks.json)."""
    from hwlab.catalog import peak_tflops

    spec = peak_tflops(peaks.get("spec"), dtype)
    if spec:
        return spec, f"spec dense {dtype} ({peaks.get('spec_key')})"
    meas = ((peaks.get("measured") or {}).get("tflops") or {}).get(dtype)
    if meas:
        return float(meas), f"measured {dtype} ceiling (peaks.json)"
    return None, f"no {dtype} peak (no catalog entry, not measured)"


def arch_geometry(arch: dict[str, Any] | None) -> dict[str, Any]:
    """What prefill_flops needs from a model's architecture (config.json keys)."""
    if not arch:
        return {}
    heads = int(arch["num_attention_heads"])
    hidden = int(arch["hidden_size"])
    return {
        "layers": int(arch["num_hidden_layers"]),
        "heads": heads,
        "head_dim": int(arch.get("head_dim") or hidden // heads),
        "embedding_params": float(arch["vocab_size"]) * hidden,
        "tied": bool(arch.get("tie_word_embeddings", False)),
    }


def prefill_mfu_columns(
    df: pd.DataFrame,
    records: list[dict[str, Any]],
    peaks: dict[str, Any],
    arch: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The decode table with prefill_flops, prefill_tflops, prefill_mfu_pct and
    mfu_peak_basis added (one value per batch; None where the batch did not run)."""
    geo = arch_geometry(arch)
    by_batch = {r["batch"]: r for r in records}
    out = df.copy()
    flops, tf, mfu, basis = [], [], [], []
    for _, row in out.iterrows():
        r = by_batch.get(row["batch"], {})
        ms = _num(row.get("prefill_ms"))
        if r.get("status") != "ok" or not ms or not r.get("param_count"):
            flops.append(None), tf.append(None), mfu.append(None), basis.append(None)
            continue
        fl = prefill_flops(r["param_count"], int(row["batch"]), int(row["prompt_len"]), **geo)
        peak, how = mfu_peak(peaks, str(row["dtype"]))
        flops.append(fl)
        tf.append(F.tflops(fl, ms / 1e3))
        mfu.append(mfu_pct(fl, ms / 1e3, peak))
        basis.append(how + ("" if geo else "; FLOPs = 2 x parameters x tokens (no architecture)"))
    out["prefill_flops"] = flops
    out["prefill_tflops"] = tf
    out["prefill_mfu_pct"] = mfu
    out["mfu_peak_basis"] = basis
    return out


def prefill_mfu_finding(decode: pd.DataFrame | None, band: tuple = MFU_BAND) -> H.Finding:
    """The writeup's "3B ends up around 2–5% MFU" on this run's prefills.

    Holds when every batch's prefill MFU lies in ``band``, fails when one lies outside.
    The decode job times its prefill once per batch, so each MFU is a single timing, read
    as exact (no spread): the verdict is never INCONCLUSIVE, and the text says it rests on
    one timing. NOT_EVALUABLE when the table has no prefill MFU (no peak) or the model is
    not 3B-class."""
    key, title = "prefill_mfu", "Prefill MFU of a 3B model ~2–5% (§5)"
    th = {"mfu_band_pct": list(band), "three_b_params": list(THREE_B)}
    if decode is None or "prefill_mfu_pct" not in decode:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            "Not evaluable here: no prefill MFU in the decode table.",
            {},
            th,
        )
    ok = decode[(decode["status"] == "ok") & decode["prefill_mfu_pct"].notna()]
    if ok.empty:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            "Not evaluable here: no batch has a prefill MFU (no peak?).",
            {},
            th,
        )
    r0 = ok.iloc[0]
    params = float(r0["weight_mb"]) * 1e6 / BYTES.get(str(r0["dtype"]), 4)
    # one prefill timing per batch (the decode job times its prefill once): a point, no spread
    per = {int(r["batch"]): {"mfu": float(r["prefill_mfu_pct"])} for _, r in ok.iterrows()}
    basis = r0.get("mfu_peak_basis")
    listing = ", ".join(f"batch {b}: {num(v['mfu'])}%" for b, v in per.items())
    ev = {"per_batch": per, "params": params, "basis": basis, "timings_per_batch": 1}
    if not THREE_B[0] <= params <= THREE_B[1]:
        return H.Finding(
            key,
            title,
            H.NOT_EVALUABLE,
            f"Not evaluable here: the claim is about a 3B model, this run's has "
            f"{num(params / 1e9)} B parameters. Its prefill MFU ({basis}): {listing}.",
            ev,
            th,
        )
    for v in per.values():
        v["verdict"] = H.all_of(
            H.against(v["mfu"], v["mfu"], band[0], above=True),
            H.against(v["mfu"], v["mfu"], band[1], above=False),
        )
    verdict = H.all_of(*(v["verdict"] for v in per.values()))
    inside = [b for b, v in per.items() if v["verdict"] == H.HOLDS]
    text = (
        f"Prefill MFU of this {num(params / 1e9)} B model ({basis}): {listing}. "
        f"In the writeup's {band[0]:g}–{band[1]:g}% band: "
        f"{', '.join(f'batch {b}' for b in inside) or 'no batch'}. Each batch's MFU rests "
        "on a single prefill timing (no repeats, so no spread to judge noise by)."
    )
    return H.Finding(key, title, verdict, text, ev, th)


# ======================================================================================
# §8 question 3 — at which TP degree does AllReduce matter?
# ======================================================================================


def forward_flops(params: float, d_model: int, layers: int, batch: int, seq_len: int) -> float:
    """FLOPs of one forward pass over batch x seq tokens: 2 x params per token plus
    causal attention 2 x batch x layers x d_model x seq² (heads x head_dim = d_model)."""
    return 2.0 * params * batch * seq_len + 2.0 * batch * layers * d_model * seq_len**2


def tp_fraction(
    *,
    params: float,
    d_model: int,
    layers: int,
    batch: int,
    seq_len: int,
    tp: int,
    peak_tflops: float,
    efficiency: float,
    busbw_gbps: float,
    bytes_per_el: float = 2,
) -> dict[str, float]:
    """AllReduce share of one forward pass at TP ``tp``: compute = FLOPs / (tp x peak x
    efficiency) per GPU, communication = the §6 ring napkin (hwlab.napkin.tp_comm) at
    ``busbw_gbps``, share = comm / (compute + comm) (no overlap)."""
    from hwlab.napkin import tp_comm

    compute = forward_flops(params, d_model, layers, batch, seq_len) / (
        tp * peak_tflops * 1e12 * efficiency
    )
    comm = tp_comm(d_model, layers, batch, seq_len, tp, bytes_per_el).time_s(busbw_gbps)
    return {"tp": tp, "compute_s": compute, "comm_s": comm, "share": comm / (compute + comm)}


def tp_threshold(degrees=TP_DEGREES, threshold: float = COMM_MEANINGFUL, **kw) -> dict[str, Any]:
    """The smallest TP degree whose AllReduce share reaches ``threshold`` (None: none of
    ``degrees`` does), with the share at every degree."""
    rows = [tp_fraction(tp=n, **kw) for n in degrees]
    first = next((r["tp"] for r in rows if r["share"] >= threshold), None)
    return {"tp": first, "rows": rows}


def run_efficiency(roofline: pd.DataFrame | None) -> tuple[float | None, str]:
    """The run's GEMM efficiency: its best point's % of the dense peak it is compared with
    (spec on a catalog GPU; on a CPU the measured ceiling, so close to 1 by construction)."""
    if roofline is None or roofline.empty or "pct_dense_peak" not in roofline:
        return None, "no GEMM sweep"
    ok = roofline[(roofline["status"] == "ok") & roofline["pct_dense_peak"].notna()]
    if ok.empty:
        return None, "no GEMM point with a peak"
    i = ok["pct_dense_peak"].idxmax()
    r = ok.loc[i]
    eff = min(1.0, float(r["pct_dense_peak"]) / 100)
    return eff, (
        f"best GEMM of this run: {r['dtype']} M={int(r['M'])} at "
        f"{num(float(r['pct_dense_peak']))}% "
        f"of its {r.get('peak_basis', '')} dense peak"
    )


def napkin_tp_inputs(napkin_tp: pd.DataFrame | None) -> dict[str, Any]:
    """Batch, sequence, bytes, the catalog key and bandwidths the §6 napkin used."""
    if napkin_tp is None or napkin_tp.empty:
        return {}
    r = napkin_tp.iloc[0]
    cat = napkin_tp[napkin_tp["bandwidth"].astype(str).str.startswith("catalog")]
    meas = napkin_tp[
        napkin_tp["bandwidth"].astype(str).str.contains("busbw at largest size", regex=False)
    ]
    key = None
    if not cat.empty:
        m = re.search(r"config/hardware\.yaml (\S+?):", str(cat["bandwidth_source"].iloc[0]))
        key = m.group(1) if m else None
    return {
        "batch": int(r["batch"]),
        "seq_len": int(r["seq_len"]),
        "bytes_per_el": float(r["bytes_per_el"]),
        "catalog_key": key,
        "catalog_busbw": _num(cat["busbw_gbps"].iloc[0]) if not cat.empty else None,
        "catalog_label": str(cat["bandwidth"].iloc[0]) if not cat.empty else None,
        "measured_busbw": _num(meas["busbw_gbps"].dropna().max()) if not meas.empty else None,
        "measured_label": str(meas["bandwidth"].iloc[-1]) if not meas.empty else None,
    }


def tp_rows(
    inputs: dict[str, Any], entries: dict[str, Any], efficiency: float | None
) -> list[dict[str, Any]]:
    """One row per parallelism-table model: the TP threshold at the catalog link and at
    the run's busbw (pure). Per link ``label`` (catalog, measured): ``tp_<label>`` is the
    smallest degree of TP_DEGREES reaching COMM_MEANINGFUL, or None; ``tp_<label>_why``
    says why it was not computed (None when it was: then a None ``tp_<label>`` means no
    degree up to ``tp_<label>_max`` reaches the threshold)."""
    from hwlab.catalog import peak_tflops
    from hwlab.napkin import TP_MODELS

    key = inputs.get("catalog_key") or "h100_sxm"
    entry = entries.get(key) or {}
    peak = peak_tflops(entry, "bf16")
    rows = []
    for m in TP_MODELS:
        row = {
            "model": m.name,
            "writeup_row": m.writeup_row,
            "writeup_practice": m.practice,
            "params_b": m.params_b,
            "d_model": m.d_model,
            "device": key,
            "peak_tflops": peak,
            "efficiency": efficiency,
        }
        for label in ("catalog", "measured"):
            bw = inputs.get(f"{label}_busbw")
            missing = [
                why
                for have, why in (
                    (bw, f"no {label} busbw"),
                    (peak, f"no bf16 peak for {key}"),
                    (efficiency, "no GEMM efficiency in this run"),
                    (row["params_b"], "no parameter count"),
                )
                if not have
            ]
            row[f"tp_{label}_why"] = "; ".join(missing) or None
            row[f"tp_{label}_max"] = TP_DEGREES[-1]
            if missing:
                row[f"tp_{label}"] = None
                row[f"share_tp8_{label}"] = None
                continue
            res = tp_threshold(
                params=row["params_b"] * 1e9,
                d_model=m.d_model,
                layers=m.layers,
                batch=inputs["batch"],
                seq_len=inputs["seq_len"],
                peak_tflops=peak,
                efficiency=efficiency,
                busbw_gbps=bw,
                bytes_per_el=inputs["bytes_per_el"],
            )
            row[f"tp_{label}"] = res["tp"]
            row[f"share_tp8_{label}"] = next(r["share"] for r in res["rows"] if r["tp"] == 8)
            row[f"busbw_{label}"] = bw
        rows.append(row)
    return rows


def d_model_trend(rows: list[dict[str, Any]], label: str) -> str:
    """How the TP 8 AllReduce share of tp_rows moves with d_model at link ``label``, read
    off the rows (sorted by d_model): falls / rises at every step, or neither."""
    pts = sorted(
        (r["d_model"], r[f"share_tp8_{label}"])
        for r in rows
        if r.get(f"share_tp8_{label}") is not None
    )
    if len(pts) < 2:
        return f"No TP 8 share computed on the {label} link to compare across d_model."
    steps = [b[1] - a[1] for a, b in zip(pts, pts[1:], strict=False)]
    trend = (
        "falls with d_model: bigger models tolerate more TP"
        if all(d < 0 for d in steps)
        else "rises with d_model"
        if all(d > 0 for d in steps)
        else "does not move monotonically with d_model"
    )
    return (
        f"On the {label} link the TP 8 share goes from {num(100 * pts[0][1])}% "
        f"(d_model {pts[0][0]}) to {num(100 * pts[-1][1])}% (d_model {pts[-1][0]}): it {trend}."
    )


def tp_cell(row: dict[str, Any], label: str) -> str:
    """A tp_rows row's threshold at link ``label`` as the §8 table prints it: the degree;
    '> N' (N the largest degree tried) when it was computed and no degree reaches the
    threshold; '— (why)' when it was not computed."""
    why = row.get(f"tp_{label}_why")
    if why:
        return f"— ({why})"
    v = row.get(f"tp_{label}")
    return f"{v}" if v is not None else f"> {row.get(f'tp_{label}_max', TP_DEGREES[-1])}"


# ======================================================================================
# §8 question 4 — tokens/s per watt at batch 1
# ======================================================================================


def tdp_watts(entry: dict[str, Any]) -> float | None:
    """The catalog's TDP; for a configurable range the maximum (the power at which the
    spec bandwidth is reached)."""
    t = entry.get("tdp_w")
    if t is None:
        return None
    return float(max(t)) if isinstance(t, list | tuple) else float(t)


def per_watt_rows(
    entries: dict[str, Any], models_b=COST_MODELS_B, precision: str = "bf16"
) -> list[dict[str, Any]]:
    """Every catalog device x model: the napkin's batch-1 tokens/s at the smallest TP that
    fits (hwlab.napkin.decode_napkin), the power of those devices, tokens/s per watt, and
    the best eligible device per model (``best``). Eligible: a TDP is known, and TP = 1 or
    the device has a GPU interconnect (the writeup: TP stays inside NVLink)."""
    from hwlab import napkin as N

    prec = N.precision(precision)
    rows = []
    for b in models_b:
        group = []
        for key, e in entries.items():
            r = N.decode_napkin(b, prec, e["memory_gb"], e["mem_bw_gbps"], entry=e)
            tp = r["min_tp"]
            watts = tdp_watts(e)
            tok = r["tokens_per_s"]
            row = {
                "model": f"{b:g}B",
                "device": key,
                "device_name": e["name"],
                "precision": precision,
                "min_tp": tp,
                "tokens_per_s": tok,
                "watts": watts * tp if watts and tp else None,
            }
            row["tokens_per_s_per_watt"] = tok / row["watts"] if tok and row["watts"] else None
            why = []
            if not tp:
                why.append("does not fit")
            if watts is None:
                why.append("no TDP in the catalog")
            if tp and tp > 1 and not e.get("interconnect"):
                why.append(f"TP={tp} without a GPU interconnect")
            row["eligible"] = not why
            row["note"] = "; ".join(why) or None
            group.append(row)
        ok = [r for r in group if r["eligible"] and r["tokens_per_s_per_watt"]]
        best = max(ok, key=lambda r: r["tokens_per_s_per_watt"]) if ok else None
        for r in group:
            r["best"] = r is best
        rows += group
    return rows


# ======================================================================================
# the findings sections
# ======================================================================================


def _read_csv(folder: Path, name: str) -> pd.DataFrame | None:
    p = folder / "tables" / name
    return pd.read_csv(p) if p.is_file() else None


def headlines(run) -> list[H.Finding]:
    """§3 and §5 headlines of a hwlab.findings.Run."""
    return [
        precision_ratio_finding(run.roofline, run.device, run.device.get("spec")),
        prefill_mfu_finding(run.decode),
    ]


def section3_5(run, by_key: dict[str, H.Finding]) -> list[str]:
    lines = ["", "## §3 and §5 — Precision and prefill, measured", ""]
    for k in ("precision_ratio", "prefill_mfu"):
        f = by_key.get(k)
        if f is not None:
            lines.append(f"- **{f.title}** — _{f.verdict}_. {f.text}")
    dec = run.decode
    if dec is not None and "prefill_mfu_pct" in dec:
        ok = dec[dec["prefill_mfu_pct"].notna()]
        if not ok.empty:
            lines.append(
                "- Prefill MFU by batch: "
                + ", ".join(
                    f"{int(r['batch'])}: {num(r['prefill_mfu_pct'])}% "
                    f"({num(r['prefill_tflops'])} TFLOP/s)"
                    for _, r in ok.iterrows()
                )
                + f" — against {ok['mfu_peak_basis'].iloc[0]}."
            )
    return lines


def section8(run, by_key: dict[str, H.Finding], catalog_path: str | None = None) -> list[str]:
    """§8: the four questions, answered for this machine."""
    from hwlab import catalog as cat
    from hwlab.hierarchy.table import fmt_bw

    entries = cat.load(catalog_path) if catalog_path else cat.load()
    folder = Path(run.folder)
    L = ["", "## §8 — The four questions, answered for this machine", ""]
    # 1. napkin vs measured
    dec = run.decode
    d1 = (
        dec[(dec["batch"] == dec["batch"].min()) & (dec["status"] == "ok")]
        if dec is not None
        else None
    )
    if d1 is not None and not d1.empty and _num(d1["bw_gbps"].iloc[0]):
        r = d1.iloc[0]
        tpot = float(r["tpot_ms_p50"])
        w_ms = F.decode_step_napkin_s(float(r["weight_mb"]) * 1e6, 0, float(r["bw_gbps"])) * 1e3
        f = by_key.get("decode_overhead")
        L.append(
            f"1. **Napkin decode estimate.** {num(float(r['weight_mb']) / 1e3)} GB of weights / "
            f"{fmt_bw(float(r['bw_gbps']))} ({r['bw_basis']}) = {num(w_ms)} ms per step at "
            f"batch {int(r['batch'])} (with the K/V cache read: {num(float(r['napkin_ms']))} ms); "
            f"measured TPOT {num(tpot)} ms, {num(tpot / w_ms)}× "
            "the 30-second napkin"
            + (f" — see the headline _{f.title}_ ({f.verdict})." if f else ".")
        )
    else:
        L.append("1. **Napkin decode estimate.** No decode batch with a bandwidth in this run.")
    # 2. GPU-Util
    g = by_key.get("gpu_util")
    L.append(
        "2. **GPU-Util vs real work.** "
        + (f"Headline *{g.title}*: _{g.verdict}_ here (its evidence is above). " if g else "")
        + "GPU-Util is the share of NVML's sample period in which any kernel ran, not how "
        "busy the SMs or the memory were. "
        + "Look at NCU's `sm__throughput.avg.pct_of_peak_sustained_elapsed` and "
        "`gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed` (tables/ncu_lab1b.md) instead."
    )
    # 3. TP degree
    inputs = napkin_tp_inputs(_read_csv(folder, "napkin_tp.csv"))
    eff, eff_how = run_efficiency(run.roofline)
    if inputs:
        rows = tp_rows(inputs, entries, eff)
        L.append(
            f"3. **TP degree where AllReduce reaches {100 * COMM_MEANINGFUL:.0f}% of a forward "
            f"pass** (batch {inputs['batch']}, seq {inputs['seq_len']}, bf16; compute on "
            f"{rows[0]['device']} at {rows[0]['peak_tflops']} TFLOP/s dense × efficiency "
            f"{'n/a' if eff is None else f'{eff:.2f}'} ({eff_how}); communication = the §6 "
            f"ring napkin at {inputs.get('catalog_label') or 'no catalog link'} "
            f"({num(inputs.get('catalog_busbw'))} GB/s) and at this run's "
            f"{inputs.get('measured_label') or 'busbw (not measured)'} "
            f"({num(inputs.get('measured_busbw'))} GB/s)):"
        )
        L += [
            "",
            "| Model | Writeup practice | TP at catalog link | AllReduce share at TP 8 "
            "(catalog) | TP at this run's busbw | share at TP 8 (this run) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:

            def sh(v):
                return "—" if v is None else f"{num(100 * v)}%"

            L.append(
                f"| {r['model']} | {r['writeup_practice']} | {tp_cell(r, 'catalog')} | "
                f"{sh(r['share_tp8_catalog'])} | {tp_cell(r, 'measured')} | "
                f"{sh(r['share_tp8_measured'])} |"
            )
        L += [
            "",
            f"   Threshold {100 * COMM_MEANINGFUL:.0f}% (COMM_MEANINGFUL in "
            "hwlab/questions.py); share = comm / (compute + comm), no overlap; parameters "
            "as the model names state. By the formula (not a measurement), compute and "
            "communication both scale with batch × seq tokens, so batch × seq moves the share "
            "only through the attention term (∝ seq²). " + d_model_trend(rows, "catalog"),
            "",
        ]
        for r in rows:
            L.append(
                f"   - {r['model']}: not evaluable on the catalog link ({r['tp_catalog_why']})."
                if r.get("tp_catalog_why")
                else f"   - {r['model']}: AllReduce becomes meaningful at TP "
                f"{tp_cell(r, 'catalog')} on the catalog link; the writeup runs it at "
                f"{r['writeup_practice']}."
            )
    else:
        L.append("3. **TP degree.** No §6 napkin table in this run (tables/napkin_tp.csv).")
    # 4. per watt
    pw = per_watt_rows(entries)
    L += [
        "",
        "4. **Cost-efficient target, by tokens/s per watt at batch 1** (bf16 weights, the "
        "napkin's upper bound at the smallest TP that fits, TDP × TP; ★ best eligible):",
        "",
    ]
    for b in COST_MODELS_B:
        grp = [r for r in pw if r["model"] == f"{b:g}B"]
        best = next((r for r in grp if r["best"]), None)
        cells = []
        for r in sorted(grp, key=lambda r: -(r["tokens_per_s_per_watt"] or 0)):
            if not r["tokens_per_s"]:
                continue
            s = f"{r['device']} TP{r['min_tp']}: {num(r['tokens_per_s'])} tok/s" + (
                f", {num(r['tokens_per_s_per_watt'])} tok/s/W" if r["tokens_per_s_per_watt"] else ""
            )
            if r["best"]:
                s = f"★ **{s}**"
            elif r["note"]:
                s += f" ({r['note']})"
            cells.append(s)
        L.append(
            f"   - {b:g}B: "
            + "; ".join(cells)
            + (f". Best per watt: **{best['device_name']}**." if best else ". No eligible device.")
        )
    L.append(
        "   No prices are in the catalog, so this ranks energy, not money: tokens per dollar "
        "(purchase or cloud $/h) can reorder it — e.g. several small devices against one large "
        "one — and batching (not priced here) raises every device's tokens per watt."
    )
    return L
