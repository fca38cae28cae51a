"""Napkin models: the writeup's paper estimates as pure functions, tables and CLI output.

Sections (one per napkin; each has its pure functions, its table writer and the
intermediates the CLI prints):

- Decode on any device (writeup §4, §5, §7, §8 question 1): weight bytes, whether they fit
  (and the smallest TP degree that makes them fit), the decode-step lower bound and the
  tokens/s upper bound at batch 1, and the ridge points, for every catalog device x model
  size x weight precision.
- Tensor-parallel communication (writeup §6): the AllReduce traffic of a TP forward pass
  and its time at a given bus bandwidth, for the writeup's worked example and the models
  of its parallelism table; where the writeup's own arithmetic does not follow from its
  formula, :func:`writeup_tp_check` says what the formula gives and which assumption would
  give the writeup's numbers.

The general arithmetic (message bytes, ring factor, busbw) lives in :mod:`hwlab.formulas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwlab import formulas as F
from hwlab.io import finite as _num
from hwlab.io import fmt_sig

GB = 1e9

# ======================================================================================
# Tensor-parallel communication (writeup §6)
# ======================================================================================
#
# Per transformer layer, Megatron-style TP does two AllReduces of the activations
# (after the attention output projection and after the FFN down projection), each of
# batch x seq_len x d_model elements. A ring AllReduce of M bytes over n GPUs makes every
# GPU send (and receive) M x 2(n-1)/n bytes, which is exactly what nccl-tests' busbw
# counts: time = M x 2(n-1)/n / busbw = M / algbw.


@dataclass(frozen=True)
class TPModel:
    """A model of the writeup's parallelism table, with the TP degree it recommends."""

    key: str
    writeup_row: str  # the row of the writeup's §6 table it stands for
    name: str
    d_model: int
    layers: int
    tp: int
    practice: str  # the writeup's "practical parallelism"
    source: str
    params_b: float  # parameters, in billions, as the model's name states (nominal)


# Architectures (hidden size, layers) from the models' papers / published configs.
TP_MODELS: tuple[TPModel, ...] = (
    TPModel(
        key="llama2-7b",
        writeup_row="≤ 7B",
        name="Llama-2-7B",
        d_model=4096,
        layers=32,
        tp=1,
        practice="TP=1, scale via DP",
        source="Touvron et al. 2023, Llama 2, Table 1; HF config hidden_size 4096, 32 layers",
        params_b=7,
    ),
    TPModel(
        key="llama2-13b",
        writeup_row="13–30B",
        name="Llama-2-13B",
        d_model=5120,
        layers=40,
        tp=2,
        practice="TP=2–4 inside NVLink",
        source="Touvron et al. 2023, Llama 2; HF config hidden_size 5120, 40 layers",
        params_b=13,
    ),
    TPModel(
        key="llama-33b",
        writeup_row="13–30B",
        name="LLaMA-33B (the '30B')",
        d_model=6656,
        layers=60,
        tp=4,
        practice="TP=2–4 inside NVLink",
        source="Touvron et al. 2023, LLaMA, Table 2 (dimension 6656, 60 layers)",
        params_b=33,
    ),
    TPModel(
        key="llama2-70b",
        writeup_row="70B",
        name="Llama-2/3-70B (the writeup's example)",
        d_model=8192,
        layers=80,
        tp=8,
        practice="TP=8 single-node NVLink",
        source="Touvron et al. 2023, Llama 2; Llama 3 paper, Table 3 (8192, 80 layers); writeup §6",
        params_b=70,
    ),
    TPModel(
        key="gpt3-175b",
        writeup_row="175B+",
        name="GPT-3 175B",
        d_model=12288,
        layers=96,
        tp=8,
        practice="TP=8 + PP across nodes",
        source="Brown et al. 2020, Language Models are Few-Shot Learners, Table 2.1 "
        "(d_model 12288, 96 layers)",
        params_b=175,
    ),
    TPModel(
        key="llama3-405b",
        writeup_row="405B+",
        name="Llama-3.1-405B",
        d_model=16384,
        layers=126,
        tp=8,
        practice="TP=8 + PP + DP",
        source="Llama Team 2024, The Llama 3 Herd of Models, Table 3 (model dimension "
        "16384, 126 layers)",
        params_b=405,
    ),
)

# The writeup's §6 worked example: inputs and the numbers it states.
WRITEUP_TP: dict[str, Any] = {
    "d_model": 8192,
    "layers": 80,
    "batch": 32,
    "seq_len": 2048,
    "tp": 8,
    "bytes_per_el": 2,
    "busbw_gbps": 750.0,
    "stated_per_allreduce_gb": 2.15,
    "stated_per_pass_gb": 344.0,
    "stated_comm_ms": 460.0,
}


@dataclass(frozen=True)
class TPComm:
    """Every intermediate of the §6 napkin for one model, batch, sequence and TP degree."""

    d_model: int
    layers: int
    batch: int
    seq_len: int
    tp: int
    bytes_per_el: float
    allreduces_per_layer: int
    message_bytes: float  # one AllReduce: bytes_per_el x batch x seq_len x d_model
    allreduces_per_pass: int  # allreduces_per_layer x layers (0 when tp == 1)
    message_per_pass_bytes: float
    ring_factor: float  # 2(n-1)/n
    ring_traffic_bytes: float  # per GPU per AllReduce: message x 2(n-1)/n
    ring_traffic_per_pass_bytes: float

    def time_s(self, busbw_gbps: float) -> float:
        """Communication time of one forward pass at bus bandwidth ``busbw_gbps``."""
        return tp_comm_time_s(self.ring_traffic_per_pass_bytes, busbw_gbps)


def tp_comm(
    d_model: int,
    layers: int,
    batch: int,
    seq_len: int,
    tp: int,
    bytes_per_el: float = 2,
    allreduces_per_layer: int = 2,
) -> TPComm:
    """The §6 intermediates (pure). TP = 1 has no AllReduce: every count is 0."""
    for name, v in (("d_model", d_model), ("layers", layers), ("batch", batch),
                    ("seq_len", seq_len), ("tp", tp)):  # fmt: skip
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    message = F.tp_allreduce_bytes(batch, seq_len, d_model, bytes_per_el)
    count = allreduces_per_layer * layers if tp > 1 else 0
    ring = F.ring_traffic_bytes(message, tp)
    return TPComm(
        d_model=d_model,
        layers=layers,
        batch=batch,
        seq_len=seq_len,
        tp=tp,
        bytes_per_el=bytes_per_el,
        allreduces_per_layer=allreduces_per_layer,
        message_bytes=message,
        allreduces_per_pass=count,
        message_per_pass_bytes=message * count,
        ring_factor=F.allreduce_busbw_factor(tp),
        ring_traffic_bytes=ring,
        ring_traffic_per_pass_bytes=ring * count,
    )


def tp_comm_time_s(traffic_bytes: float, busbw_gbps: float) -> float:
    """Seconds to move ``traffic_bytes`` per GPU at ``busbw_gbps`` (bandwidth term only)."""
    if busbw_gbps <= 0:
        raise ValueError(f"bus bandwidth must be > 0 GB/s, got {busbw_gbps}")
    return traffic_bytes / (busbw_gbps * GB)


def tp_steps(c: TPComm, bandwidths: list[tuple[str, float]]) -> list[str]:
    """The napkin written out, one intermediate per line (for the CLI and the report)."""
    b = f"{c.bytes_per_el:g} B"
    lines = [
        f"message per AllReduce = {b} × batch {c.batch} × seq {c.seq_len} × d_model "
        f"{c.d_model} = {c.message_bytes:,.0f} B = {fmt_sig(c.message_bytes / GB, 4)} GB",
    ]
    if c.tp == 1:
        lines.append("TP = 1: no tensor-parallel AllReduce, no communication per pass")
        return lines
    lines += [
        f"AllReduces per forward pass = {c.allreduces_per_layer} × {c.layers} layers = "
        f"{c.allreduces_per_pass}",
        f"message volume per pass = {c.allreduces_per_pass} × "
        f"{fmt_sig(c.message_bytes / GB, 4)} GB "
        f"= {fmt_sig(c.message_per_pass_bytes / GB, 4)} GB",
        f"ring factor 2(n−1)/n at TP {c.tp} = {fmt_sig(c.ring_factor, 4)}",
        f"per-GPU ring traffic per AllReduce = {fmt_sig(c.message_bytes / GB, 4)} GB × "
        f"{fmt_sig(c.ring_factor, 4)} = {fmt_sig(c.ring_traffic_bytes / GB, 4)} GB",
        f"per-GPU ring traffic per pass = {c.allreduces_per_pass} × "
        f"{fmt_sig(c.ring_traffic_bytes / GB, 4)} GB = "
        f"{fmt_sig(c.ring_traffic_per_pass_bytes / GB, 4)} GB",
    ]
    for label, bw in bandwidths:
        if bw is None or bw != bw:
            lines.append(f"communication per pass at {label}: not available")
            continue
        lines.append(
            f"communication per pass at {fmt_sig(bw, 4)} GB/s busbw ({label}) = "
            f"{fmt_sig(c.ring_traffic_per_pass_bytes / GB, 4)} GB / {fmt_sig(bw, 4)} GB/s = "
            f"{_ms(c.time_s(bw) * 1e3)} ms"
        )
    return lines


def _ms(x: float) -> str:
    """Milliseconds as the tables print them: 4 significant digits below 1,000, the whole
    number grouped from there (:func:`hwlab.io.fmt_sig`; no exponent notation)."""
    return fmt_sig(x, 4 if abs(x) < 1000 else 3)


def _md(df) -> str:
    from hwlab.io import markdown

    return markdown(df.astype(object).where(df.notna(), None))


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b)


def writeup_tp_check(rel: float = 0.01) -> list[dict[str, Any]]:
    """The writeup's §6 numbers against its own formula (pure; computed, not pasted).

    For each stated number: what the formula gives, the ratio, whether it follows, and
    which assumptions reproduce it (each tried and kept only if it lands within ``rel``
    of the stated value after the writeup's rounding).
    """
    w = WRITEUP_TP
    c = tp_comm(w["d_model"], w["layers"], w["batch"], w["seq_len"], w["tp"], w["bytes_per_el"])
    stated_msg = w["stated_per_allreduce_gb"] * GB
    candidates = {
        "4 bytes per element (fp32), not bf16's 2": F.tp_allreduce_bytes(
            w["batch"], w["seq_len"], w["d_model"], 4
        ),
        "a ring factor of 2 (reduce-scatter + all-gather, 2(n−1)/n taken as 2)": (
            2 * c.message_bytes
        ),
        f"the ring's per-GPU traffic at n = {w['tp']} (factor {c.ring_factor:g})": (
            c.ring_traffic_bytes
        ),
    }
    # 2.15 GB has three significant digits: accept what rounds to it
    msg_matches = [k for k, v in candidates.items() if _close(v, stated_msg, 0.005)]
    per_pass_from_stated = c.allreduces_per_pass * stated_msg
    time_from_stated = w["stated_per_pass_gb"] * GB / (w["busbw_gbps"] * GB)
    rows = [
        {
            "quantity": "bytes per AllReduce",
            "writeup": f"{w['stated_per_allreduce_gb']} GB",
            "formula": f"2 × {w['batch']} × {w['seq_len']} × {w['d_model']} = "
            f"{c.message_bytes:,.0f} B = {fmt_sig(c.message_bytes / GB, 4)} GB",
            "ratio": stated_msg / c.message_bytes,
            "follows": _close(stated_msg, c.message_bytes, rel),
            "explanation": (
                "does NOT follow from its formula (2 bytes × batch × seq × d_model gives "
                f"{fmt_sig(c.message_bytes / GB, 4)} GB); the stated value is reproduced by: "
                + ("; or ".join(msg_matches) if msg_matches else "no simple assumption")
                + f". The ring's real per-GPU traffic at TP {w['tp']} is "
                f"{fmt_sig(c.ring_traffic_bytes / GB, 4)} GB (factor {c.ring_factor:g})"
            ),
        },
        {
            "quantity": "bytes per forward pass",
            "writeup": f"{w['stated_per_pass_gb']:g} GB",
            "formula": f"{c.allreduces_per_pass} × {fmt_sig(c.message_bytes / GB, 4)} GB = "
            f"{fmt_sig(c.message_per_pass_bytes / GB, 4)} GB of messages; per-GPU ring traffic "
            f"{fmt_sig(c.ring_traffic_per_pass_bytes / GB, 4)} GB",
            "ratio": w["stated_per_pass_gb"] * GB / c.message_per_pass_bytes,
            "follows": _close(w["stated_per_pass_gb"] * GB, per_pass_from_stated, rel),
            "explanation": (
                f"follows from its 2.15 GB ({c.allreduces_per_pass} × 2.15 GB = "
                f"{fmt_sig(per_pass_from_stated / GB, 4)} GB), so it inherits the factor "
                f"{fmt_sig(stated_msg / c.message_bytes)}; from the formula the pass moves "
                f"{fmt_sig(c.message_per_pass_bytes / GB, 4)} GB of messages, "
                f"{fmt_sig(c.ring_traffic_per_pass_bytes / GB, 4)} GB per GPU on a ring"
            ),
        },
        {
            "quantity": "communication per pass",
            "writeup": f"~{w['stated_comm_ms']:g} ms at ~{w['busbw_gbps']:g} GB/s",
            "formula": f"{fmt_sig(c.ring_traffic_per_pass_bytes / GB, 4)} GB / "
            f"{w['busbw_gbps']:g} GB/s = {fmt_sig(c.time_s(w['busbw_gbps']) * 1e3, 4)} ms",
            "ratio": w["stated_comm_ms"] / (c.time_s(w["busbw_gbps"]) * 1e3),
            "follows": _close(w["stated_comm_ms"] * 1e-3, time_from_stated, 0.02),
            "explanation": (
                f"follows from its 344 GB ({w['stated_per_pass_gb']:g} GB / "
                f"{w['busbw_gbps']:g} GB/s = {fmt_sig(time_from_stated * 1e3, 4)} ms); with the "
                f"formula's ring traffic at the same bandwidth it is "
                f"{fmt_sig(c.time_s(w['busbw_gbps']) * 1e3, 4)} ms — same order of magnitude, so "
                "the writeup's conclusion (communication is a real cost) stands"
            ),
        },
    ]
    return rows


# -- the bandwidths a TP pass is priced at ---------------------------------------------


@dataclass(frozen=True)
class Bandwidth:
    label: str
    busbw_gbps: float | None
    source: str


def writeup_bandwidth() -> Bandwidth:
    return Bandwidth(
        "writeup",
        WRITEUP_TP["busbw_gbps"],
        "writeup §6: 'H100 NVLink-4 8-way ring, ~750 GB/s effective'",
    )


def catalog_bandwidth(key: str, entry: dict[str, Any] | None) -> Bandwidth:
    """The catalog's interconnect as a ring busbw ceiling: bidirectional / 2.

    A ring AllReduce sends and receives at once; nccl-tests' busbw is compared with the
    per-direction line rate (NVLink 4: 900 GB/s bidirectional = 450 GB/s each way).
    """
    link = (entry or {}).get("interconnect")
    if not link or not link.get("gbps_bidir"):
        return Bandwidth(f"catalog {key}: no GPU interconnect", None, f"config/hardware.yaml {key}")
    bidir = float(link["gbps_bidir"])
    return Bandwidth(
        f"catalog {link['name']} per direction",
        bidir / 2,
        f"config/hardware.yaml {key}: {link['name']} {bidir:g} GB/s bidirectional, "
        f"/ 2 = {bidir / 2:g} GB/s per direction (the line rate busbw is compared with)",
    )


def measured_bandwidths(fit_rows: list[dict[str, Any]]) -> list[Bandwidth]:
    """This run's busbw: at the largest size and the fitted asymptote, per sweep."""
    out = []
    for r in fit_rows:
        sweep = f"{r['backend']} n={int(r['world_size'])} {r['dtype']}"
        if r.get("status") != "ok":
            out.append(
                Bandwidth(f"measured {sweep}: {r.get('status')}", None, str(r.get("reason") or ""))
            )
            continue
        out.append(
            Bandwidth(
                f"measured {sweep} busbw at largest size",
                _num(r.get("busbw_at_max_gbps")),
                f"this run, tables/allreduce.csv, size {int(r['max_size_bytes']):,} B",
            )
        )
        out.append(
            Bandwidth(
                f"measured {sweep} fitted β (busbw)",
                _num(r.get("beta_busbw_gbps")),
                "this run, tables/allreduce_fit.csv (α-β fit)",
            )
        )
    return out


def tp_table_rows(
    models: tuple[TPModel, ...] | list[TPModel],
    batch: int,
    seq_len: int,
    bandwidths: list[Bandwidth],
    bytes_per_el: float = 2,
) -> list[dict[str, Any]]:
    """One row per model x bandwidth with every intermediate (pure)."""
    check = {r["quantity"]: r for r in writeup_tp_check()}
    rows = []
    for m in models:
        c = tp_comm(m.d_model, m.layers, batch, seq_len, m.tp, bytes_per_el)
        is_example = (m.d_model, m.layers, m.tp, batch, seq_len, bytes_per_el) == (
            WRITEUP_TP["d_model"],
            WRITEUP_TP["layers"],
            WRITEUP_TP["tp"],
            WRITEUP_TP["batch"],
            WRITEUP_TP["seq_len"],
            WRITEUP_TP["bytes_per_el"],
        )
        for bw in bandwidths:
            t = c.time_s(bw.busbw_gbps) if bw.busbw_gbps else None
            note = []
            if m.tp == 1:
                note.append("TP=1: no AllReduce")
            if "PP" in m.practice:
                note.append(
                    "with PP each stage carries only its layers' AllReduces, but one pass "
                    "crosses all stages in turn: the per-pass total is the same"
                )
            if is_example:
                note.append(
                    "writeup states 2.15 GB per AllReduce, 344 GB and ~460 ms per pass: "
                    + check["bytes per AllReduce"]["explanation"]
                )
            rows.append(
                {
                    "model": m.name,
                    "writeup_row": m.writeup_row,
                    "practice": m.practice,
                    "d_model": m.d_model,
                    "layers": m.layers,
                    "tp": m.tp,
                    "batch": batch,
                    "seq_len": seq_len,
                    "bytes_per_el": bytes_per_el,
                    "message_bytes": c.message_bytes,
                    "message_gb": c.message_bytes / GB,
                    "allreduces_per_pass": c.allreduces_per_pass,
                    "message_per_pass_gb": c.message_per_pass_bytes / GB,
                    "ring_factor": c.ring_factor,
                    "ring_traffic_gb": c.ring_traffic_bytes / GB,
                    "ring_traffic_per_pass_gb": c.ring_traffic_per_pass_bytes / GB,
                    "bandwidth": bw.label,
                    "busbw_gbps": bw.busbw_gbps,
                    "comm_ms": t * 1e3 if t is not None else None,
                    "bandwidth_source": bw.source,
                    "architecture_source": m.source,
                    "note": "; ".join(note) or None,
                }
            )
    return rows


def tp_markdown(rows: list[dict[str, Any]], bandwidths: list[Bandwidth]) -> str:
    import pandas as pd

    w = WRITEUP_TP
    c = tp_comm(w["d_model"], w["layers"], w["batch"], w["seq_len"], w["tp"], w["bytes_per_el"])
    steps = tp_steps(c, [(b.label, b.busbw_gbps) for b in bandwidths])
    lines = [
        "### §6 — Tensor-parallel AllReduce traffic (napkin)",
        "",
        f"#### The writeup's worked example, step by step: 70B (d_model {w['d_model']}, "
        f"{w['layers']} layers), batch {w['batch']}, seq {w['seq_len']}, bf16, TP {w['tp']}",
        "",
        *[f"{i}. {s}" for i, s in enumerate(steps, 1)],
        "",
        "#### Where the writeup's arithmetic does not follow from its formula",
        "",
    ]
    check = pd.DataFrame(writeup_tp_check())
    check["follows"] = check.follows.map({True: "yes", False: "**NO**"})
    lines += [
        check[["quantity", "writeup", "formula", "ratio", "follows", "explanation"]]
        .rename(columns={"ratio": "writeup / formula", "follows": "follows?"})
        .pipe(_md),
        "",
        "- the bandwidth: NVLink 4 is 900 GB/s bidirectional, 450 GB/s per direction; a ring "
        "AllReduce's busbw is bounded by the per-direction rate, so ~750 GB/s as busbw is above "
        "line rate (nccl-tests' maintainers report ~370 GB/s ring, ~480 GB/s with NVLS on "
        "8×H100). At a real busbw the formula's pass takes longer than 460 ms, not shorter.",
        "",
        "#### The parallelism table's models (same batch and sequence)",
        "",
    ]
    df = pd.DataFrame(rows)
    keys = ["writeup_row", "model", "d_model", "layers", "tp", "message_gb",
            "allreduces_per_pass", "ring_traffic_per_pass_gb"]  # fmt: skip
    wide = df[keys].drop_duplicates("model").set_index("model")
    for b in bandwidths:
        ms = df[df.bandwidth == b.label].set_index("model").comm_ms
        wide[
            f"ms @ {b.label}" + (f" ({fmt_sig(b.busbw_gbps, 4)} GB/s)" if b.busbw_gbps else "")
        ] = ms
    wide = wide.reset_index()[["writeup_row", "model", *wide.columns.drop("writeup_row")]]
    wide = wide.astype(object).where(wide.notna(), None)
    lines += [
        wide.rename(
            columns={
                "writeup_row": "writeup row",
                "tp": "TP",
                "message_gb": "GB / AllReduce",
                "allreduces_per_pass": "AllReduces / pass",
                "ring_traffic_per_pass_gb": "ring GB / GPU / pass",
            }
        ).pipe(_md),
        "",
        "- ms @ X: communication per forward pass at bus bandwidth X (— where X is unknown, "
        "e.g. the sweep was skipped; 0 where TP = 1 has no AllReduce)",
        "- per-AllReduce message = bytes × batch × seq × d_model; 2 AllReduces per layer; "
        "per-GPU ring traffic = message × 2(n−1)/n; time = traffic / busbw (the bandwidth "
        "term; each AllReduce also pays the per-call latency α of tables/allreduce_fit.csv)",
        "- 175B+ and 405B+ use PP across nodes: each stage carries only its layers' "
        "AllReduces, but one forward pass crosses every stage in turn, so the per-pass total "
        "is the one shown",
        "- a measured busbw from a CPU (gloo between processes) prices the pass as if this "
        "machine's collective were the interconnect: a what-if, not a GPU prediction",
    ]
    for b in bandwidths:
        lines.append(f"- bandwidth '{b.label}': {b.source}")
    lines.append("- architectures: " + "; ".join(f"{m.name}: {m.source}" for m in TP_MODELS))
    return "\n".join(lines) + "\n"


def write_napkin_tp(
    csv: str,
    md: str,
    *,
    fit_csv: str,
    device_json: str,
    catalog_path: str,
    batch: int,
    seq_len: int,
    bytes_per_el: float,
    hardware: str,
    hardware_json: str | None = None,
) -> None:
    """Snakemake entry: tables/napkin_tp.{csv,md} from the models, catalog and this run."""
    import pandas as pd

    from hwlab import catalog as cat
    from hwlab.io import write_table, write_text
    from hwlab.records import read_device

    entries = cat.load(catalog_path)
    key = hardware
    if hardware == "auto":
        dev_key = read_device(device_json, hardware_json).get("catalog_key")
        has_link = dev_key and (entries.get(dev_key) or {}).get("interconnect")
        key = dev_key if has_link else "h100_sxm"
    if key not in entries:
        raise KeyError(f"allreduce.tp_napkin.hardware: {key!r} is not in the catalog")
    fit_rows = pd.read_csv(fit_csv).to_dict("records")
    bandwidths = [
        writeup_bandwidth(),
        catalog_bandwidth(key, entries[key]),
        *measured_bandwidths(fit_rows),
    ]
    rows = tp_table_rows(TP_MODELS, batch, seq_len, bandwidths, bytes_per_el)
    write_table(pd.DataFrame(rows), csv)
    write_text(md, tp_markdown(rows, bandwidths))


# ======================================================================================
# Decode on any device (writeup §4, §5, §7, §8 question 1)
# ======================================================================================
#
# At batch 1 a decode step must stream every weight from memory once: the step cannot be
# faster than weight bytes / memory bandwidth (the writeup's 6 GB / 3.35 TB/s = 1.79 ms for
# 3B bf16 on an H100). KV-cache reads, activations and framework overhead only add to it.
#
# Fits: the weights must fit in the memory left after a headroom (``kv_headroom``, default
# 20%) kept free for the KV cache, activations and the runtime (CUDA context, allocator):
# weights <= (1 - kv_headroom) x memory. 70B bf16 (140 GB) does not "fit" a 141 GB H200 with
# no room for a single KV cache entry. Otherwise the smallest power-of-two TP that fits.
#
# TP: n devices each stream 1/n of the weights, and every layer pays two AllReduces of the
# step's activations (batch x d_model x 2 bytes; §6) over the device's real link
# (:func:`tp_link`): NVLink inside a node where the device has it, PCIe for cards without
# NVLink, a network across nodes beyond 8 devices or for devices with no GPU link. At
# batch 1 the messages are a few KB, so each AllReduce costs its latency: per AllReduce
# time = latency + message x 2(n-1)/n / link bandwidth per direction.

NAPKIN_MODELS_B: tuple[float, ...] = (3, 7, 13, 30, 70, 175, 405)
KV_HEADROOM = 0.2
NODE_GPUS = 8  # devices per node; TP beyond this crosses nodes

# (d_model, layers) of the napkin's model sizes, for the TP AllReduce count and message size:
# the TP_MODELS architectures above at their nominal sizes, and 3B: Qwen2.5-3B
# (config/models/qwen2.5-3b.json)
NAPKIN_GEOMETRY: dict[float, tuple[int, int]] = {
    3: (2048, 36),
    **{m.params_b: (m.d_model, m.layers) for m in TP_MODELS},
}


@dataclass(frozen=True)
class Link:
    """A link TP's AllReduces run over: per-direction bandwidth and small-message latency."""

    name: str
    gbps: float  # per direction (the rate a ring's busbw is compared with)
    latency_us: float  # one small AllReduce, end to end
    source: str


# Small-message AllReduce latencies measured with nccl-tests (public reports):
NVLINK_LATENCY_US = 6.0  # 2x H100 NVLink, NVLS, 128 B: ~6 us (NVIDIA/nccl#1259)
PCIE_LATENCY_US = (
    42.0  # 8x RTX 4090 over PCIe, 8 B: 42 us (NVIDIA/nccl#1530; 54 us on 8x 3090, #1439)
)
NETWORK_LATENCY_US = 47.0  # 2 nodes x 8 H20, InfiniBand NDR, 4-512 B: ~47 us (NVIDIA/nccl#1244)
NETWORK_GBPS = 50.0  # one 400 Gb/s NIC per GPU (NDR), per direction
NETWORK_NOGPU_GBPS = 12.5  # 100 Gb Ethernet, for devices without a GPU link or PCIe card


def tp_link(entry: dict[str, Any] | None, tp: int) -> Link | None:
    """The link a TP group of ``tp`` devices of this catalog entry communicates over
    (None at TP 1). See the module comment above for the model and the sources."""
    if tp <= 1:
        return None
    entry = entry or {}
    nv = entry.get("interconnect")
    host = entry.get("host_link")
    if tp > NODE_GPUS:
        gpu_link = nv or host
        bw = NETWORK_GBPS if gpu_link else NETWORK_NOGPU_GBPS
        return Link(
            f"network across nodes (TP {tp} > {NODE_GPUS} per node)",
            bw,
            NETWORK_LATENCY_US,
            f"{bw:g} GB/s per direction ({'400 Gb/s NIC per GPU' if gpu_link else '100 GbE'}); "
            f"{NETWORK_LATENCY_US:g} µs small-message AllReduce across 2 InfiniBand nodes "
            "(NVIDIA/nccl#1244)",
        )
    for link, suffix, latency, where in (
        (nv, "", NVLINK_LATENCY_US, "(2x H100 NVLink, NVIDIA/nccl#1259)"),
        (host, " (no NVLink)", PCIE_LATENCY_US, "over PCIe (8x RTX 4090, NVIDIA/nccl#1530)"),
    ):
        if link and link.get("gbps_bidir"):
            return Link(
                f"{link['name']} per direction{suffix}",
                float(link["gbps_bidir"]) / 2,
                latency,
                f"{link['name']} {link['gbps_bidir']:g} GB/s bidirectional / 2; {latency:g} µs "
                f"small-message AllReduce {where}",
            )
    return Link(
        "network (no GPU link on this device)",
        NETWORK_NOGPU_GBPS,
        NETWORK_LATENCY_US,
        f"{NETWORK_NOGPU_GBPS:g} GB/s per direction (100 GbE); {NETWORK_LATENCY_US:g} µs "
        "small-message AllReduce across nodes (NVIDIA/nccl#1244)",
    )


def geometry(params_b: float) -> tuple[int, int]:
    """(d_model, layers) of the napkin model size closest to ``params_b`` (log scale)."""
    import math

    key = min(NAPKIN_GEOMETRY, key=lambda k: abs(math.log(k) - math.log(params_b)))
    return NAPKIN_GEOMETRY[key]


def tp_allreduce_ms(
    params_b: float, tp: int, link: Link | None, batch: int = 1, bytes_per_el: float = 2
) -> float:
    """AllReduce time per decode step at TP ``tp``: 2 per layer, each latency + ring traffic
    of the step's activations (batch x d_model x bytes) over the link (pure)."""
    if tp <= 1 or link is None:
        return 0.0
    d_model, layers = geometry(params_b)
    msg = F.tp_allreduce_bytes(batch, 1, d_model, bytes_per_el)
    per = link.latency_us * 1e-6 + F.ring_traffic_bytes(msg, tp) / (link.gbps * GB)
    return 2 * layers * per * 1e3


@dataclass(frozen=True)
class Precision:
    """A weight precision: bytes per weight and the tensor-core peak its math runs at."""

    name: str
    bytes_per_param: float
    compute_dtypes: tuple[str, ...]  # catalog peak keys, first one present wins
    note: str


PRECISIONS: tuple[Precision, ...] = (
    Precision("bf16", 2, ("bf16", "fp16"), "W16A16"),
    Precision("fp8/int8", 1, ("fp8", "int8"), "W8A8: fp8 where the device has it, else int8"),
    Precision("int4", 0.5, ("bf16", "fp16"), "W4A16: weights dequantised to bf16 for the math"),
)


def precision(name: str) -> Precision:
    for p in PRECISIONS:
        if name in (p.name, *p.name.split("/")):
            return p
    raise ValueError(f"unknown precision {name!r}; known: bf16, fp8, int8, int4")


def min_tp_to_fit(
    weight_gb: float, memory_gb: float, max_tp: int = 64, headroom: float = 0.0
) -> int | None:
    """Smallest power-of-two TP degree whose per-device weight share fits in the memory
    left after ``headroom`` (a fraction of memory kept for the KV cache and runtime)."""
    usable = memory_gb * (1 - headroom)
    tp = 1
    while tp <= max_tp:
        if weight_gb / tp <= usable:
            return tp
        tp *= 2
    return None


def compute_peak(entry: dict[str, Any], prec: Precision, sparse: bool = False) -> float | None:
    from hwlab.catalog import peak_tflops

    for dt in prec.compute_dtypes:
        v = peak_tflops(entry, dt, sparse=sparse)
        if v:
            return v
    return None


def decode_napkin(
    params_b: float,
    prec: Precision,
    memory_gb: float,
    mem_bw_gbps: float,
    dense_tflops: float | None = None,
    sparse_tflops: float | None = None,
    *,
    kv_headroom: float = KV_HEADROOM,
    entry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every intermediate of §8's first question for one device, model and precision;
    ``entry``: the catalog entry, for the link its TP AllReduces cross."""
    if not 0 <= kv_headroom < 1:
        raise ValueError(f"kv_headroom must be in [0, 1), got {kv_headroom}")
    wbytes = F.weight_bytes(params_b * 1e9, prec.bytes_per_param)
    weight_gb = wbytes / GB
    usable = memory_gb * (1 - kv_headroom)
    tp = min_tp_to_fit(weight_gb, memory_gb, headroom=kv_headroom)
    weights_s = F.decode_step_napkin_s(wbytes / (tp or 1), 0, mem_bw_gbps)
    link = tp_link(entry, tp) if tp else None
    ar_ms = tp_allreduce_ms(params_b, tp, link) if tp else 0.0
    step_ms = weights_s * 1e3 + ar_ms if tp else None
    return {
        "params_b": params_b,
        "dtype": prec.name,
        "bytes_per_param": prec.bytes_per_param,
        "weight_gb": weight_gb,
        "memory_gb": memory_gb,
        "kv_headroom": kv_headroom,
        "usable_gb": usable,
        "fits": weight_gb <= usable,
        "min_tp": tp,
        "mem_bw_gbps": mem_bw_gbps,
        "weights_ms": weights_s * 1e3 if tp else None,
        "allreduce_ms": ar_ms if tp else None,
        "link": link.name if link else None,
        "link_gbps": link.gbps if link else None,
        "link_latency_us": link.latency_us if link else None,
        "link_source": link.source if link else None,
        "step_ms": step_ms,
        "tokens_per_s": 1e3 / step_ms if step_ms else None,
        "ridge_dense": F.ridge_point(dense_tflops, mem_bw_gbps) if dense_tflops else None,
        "ridge_sparse": F.ridge_point(sparse_tflops, mem_bw_gbps) if sparse_tflops else None,
        "dense_tflops": dense_tflops,
        "sparse_tflops": sparse_tflops,
    }


def decode_table_rows(
    entries: dict[str, dict[str, Any]],
    models_b: tuple[float, ...] = NAPKIN_MODELS_B,
    precisions: tuple[Precision, ...] = PRECISIONS,
    kv_headroom: float = KV_HEADROOM,
) -> list[dict[str, Any]]:
    """One row per catalog device x model size x weight precision (pure)."""
    rows = []
    for key, e in entries.items():
        for prec in precisions:
            dense, sparse = compute_peak(e, prec), compute_peak(e, prec, sparse=True)
            for b in models_b:
                r = decode_napkin(
                    b, prec, e["memory_gb"], e["mem_bw_gbps"], dense, sparse,
                    kv_headroom=kv_headroom, entry=e,
                )  # fmt: skip
                note = [prec.note]
                if r["min_tp"] and r["min_tp"] > 1:
                    note.append(
                        f"needs TP={r['min_tp']}: weights / (TP x bandwidth) + "
                        f"{fmt_sig(r['allreduce_ms'])} ms of AllReduce per step over {r['link']}"
                    )
                elif not r["min_tp"]:
                    note.append("does not fit even at TP=64")
                rows.append(
                    {
                        "device": key,
                        "device_name": e["name"],
                        "model": f"{b:g}B",
                        **r,
                        "note": "; ".join(note),
                    }
                )
    return rows


def writeup_decode_check(
    entries: dict[str, dict[str, Any]], kv_headroom: float = KV_HEADROOM
) -> list[dict[str, Any]]:
    """The writeup's decode-related claims (§4, §5, §7) against the napkin and the catalog."""
    from hwlab.catalog import peak_tflops

    def nap(key: str, params_b: float, prec: str = "bf16") -> dict[str, Any]:
        e = entries[key]
        return decode_napkin(params_b, precision(prec), e["memory_gb"], e["mem_bw_gbps"],
                             kv_headroom=kv_headroom, entry=e)  # fmt: skip

    def step_ms(key: str, params_b: float, prec: str = "bf16") -> float:
        return nap(key, params_b, prec)["step_ms"]

    h100, b200, m3 = entries["h100_sxm"], entries["b200"], entries["m3_ultra"]
    agx = entries["jetson_agx_orin_64gb"]
    m3_bf16, m3_int4 = 1e3 / step_ms("m3_ultra", 70), 1e3 / step_ms("m3_ultra", 70, "int4")
    b200_speedup = step_ms("h100_sxm", 3) / step_ms("b200", 3)
    fp16_ratio = peak_tflops(h100, "fp16", sparse=True) / peak_tflops(agx, "fp16", sparse=True)
    a100_70, m3_70, m3_70_int4 = (
        nap("a100_80gb", 70),
        nap("m3_ultra", 70),
        nap("m3_ultra", 70, "int4"),
    )
    fits_3b = [name for key, name in (("h100_sxm", "H100"), ("b200", "B200"))
               if nap(key, 3)["fits"]]  # fmt: skip
    m3_follows = m3_bf16 >= 30 * 0.9
    need_tbps = 30 * m3_70["weight_gb"] / 1e3  # GB/s for 30 steps/s, in TB/s
    if m3_follows:
        m3_why = (
            f"{m3['mem_bw_gbps']:g} GB/s / {fmt_sig(m3_70['weight_gb'])} GB of bf16 weights allows "
            f"{fmt_sig(m3_bf16)} tok/s at batch 1, so ~30 tok/s is within the napkin"
        )
    else:
        m3_why = (
            f"30 tok/s would need 30 x {fmt_sig(m3_70['weight_gb'])} GB = "
            f"{fmt_sig(need_tbps)} TB/s "
            f"against {m3['mem_bw_gbps']:g} GB/s; "
            + (
                f"even int4 weights ({fmt_sig(m3_70_int4['weight_gb'])} GB) cap it at "
                f"{fmt_sig(m3_int4)} tok/s, below 30"
                if m3_int4 < 30 * 0.9
                else f"int4 weights ({fmt_sig(m3_70_int4['weight_gb'])} GB) would allow "
                f"{fmt_sig(m3_int4)} tok/s"
            )
            + ", so the figure cannot be bf16 decode at batch 1"
        )
    room = f"{100 * kv_headroom:.0f}% of memory kept for KV cache and runtime"
    rows = [
        {
            "claim": "§5: 3B bf16 on H100, 6 GB / 3.35 TB/s ≈ 1.79 ms",
            "napkin": f"{fmt_sig(step_ms('h100_sxm', 3))} ms",
            "follows": abs(step_ms("h100_sxm", 3) - 1.79) < 0.01,
            "explanation": "weights / bandwidth at batch 1",
        },
        {
            "claim": "§4: B200 decode ~2.4x faster than H100",
            "napkin": f"{fmt_sig(b200_speedup)}x ({b200['mem_bw_gbps']:g} / "
            f"{h100['mem_bw_gbps']:g} "
            f"GB/s, 3B bf16 fits: {' and '.join(fits_3b) or 'neither'})",
            "follows": abs(b200_speedup - 2.4) < 0.1,
            "explanation": "decode is bandwidth-bound: the speedup is the bandwidth ratio",
        },
        {
            "claim": "§7: 70B bf16 (140 GB) won't fit on A100 80GB, fits on M3 Ultra",
            "napkin": f"A100 fits: {a100_70['fits']} (usable {fmt_sig(a100_70['usable_gb'])} GB), "
            f"M3 Ultra fits: {m3_70['fits']} (usable {fmt_sig(m3_70['usable_gb'])} GB)",
            "follows": not a100_70["fits"] and m3_70["fits"],
            "explanation": f"weights against memory less {room}",
        },
        {
            "claim": "§7: M3 Ultra runs 70B bf16 at ~30 tok/s",
            "napkin": f"at most {fmt_sig(m3_bf16)} tok/s in bf16 "
            f"({fmt_sig(m3_70['weight_gb'])} GB / "
            f"{m3['mem_bw_gbps']:g} GB/s), {fmt_sig(m3_int4)} tok/s in int4",
            "follows": m3_follows,
            "explanation": m3_why,
        },
        {
            "claim": "§7: AGX Orin ~14x slower than H100 in FP16, ~16x lower bandwidth",
            "napkin": f"{fmt_sig(fp16_ratio)}x FP16 (sparse figures), "
            f"{fmt_sig(h100['mem_bw_gbps'] / agx['mem_bw_gbps'])}x bandwidth",
            "follows": abs(fp16_ratio - 14) < 1
            and abs(h100["mem_bw_gbps"] / agx["mem_bw_gbps"] - 16) < 1,
            "explanation": "both FP16 figures are sparse tensor peaks",
        },
    ]
    return rows


def decode_markdown(
    rows: list[dict[str, Any]],
    checks: list[dict[str, Any]] | None = None,
    kv_headroom: float = KV_HEADROOM,
) -> str:
    import pandas as pd

    from hwlab.io import markdown as md_table

    df = pd.DataFrame(rows)
    lines = [
        "### §4, §5, §7, §8 — Decode napkin: every catalog device x model x precision",
        "",
        "Decode step lower bound at batch 1 = weight bytes / (TP x memory bandwidth) + the TP "
        "AllReduces (2 per layer, each its link's small-message latency + ring traffic / link "
        "bandwidth); tokens/s upper bound = 1 / step. 'Fits' means the weights fit in the "
        f"memory left after {100 * kv_headroom:.0f}% is kept for the KV cache, activations "
        "and the runtime (`napkin.kv_headroom`); min TP is the smallest power of two that "
        "fits. TP's link: NVLink where the device has it (inside a node, up to 8), PCIe for "
        "cards without NVLink, a network across nodes beyond 8 devices or for devices with no "
        "GPU link (the link column and notes name the latency and bandwidth used, with "
        "their sources).",
        "",
    ]
    if checks:
        view = pd.DataFrame(checks)
        view["follows"] = view["follows"].map({True: "yes", False: "**NO**"})
        lines += [
            "#### The writeup's decode claims against the napkin",
            "",
            md_table(view[["claim", "napkin", "follows", "explanation"]]),
            "",
        ]
    for prec in df["dtype"].unique():
        d = df[df["dtype"] == prec]
        wide = d.pivot_table(index=["device"], columns="model", values="step_ms", sort=False)
        wide = wide[[f"{b:g}B" for b in NAPKIN_MODELS_B if f"{b:g}B" in wide.columns]]
        tp = d.pivot_table(index=["device"], columns="model", values="min_tp", sort=False)
        cells = wide.copy().astype(object)
        for dev in wide.index:
            for m in wide.columns:
                ms, t = wide.loc[dev, m], tp.loc[dev, m]
                cells.loc[dev, m] = (
                    "—" if pd.isna(ms) else fmt_sig(ms) + (f" (TP{int(t)})" if t and t > 1 else "")
                )
        lines += [
            f"#### {prec}: decode step (ms) at batch 1, TP AllReduces included",
            "",
            md_table(cells.reset_index()),
            "",
        ]
    links = df[df["link"].notna()].drop_duplicates(["link", "link_source"])
    if not links.empty:
        lines += ["#### TP links (AllReduce latency and per-direction bandwidth used)", ""]
        lines += [
            f"- {r['link']}: {r['link_latency_us']:g} µs, {r['link_gbps']:g} GB/s — "
            f"{r['link_source']}"
            for _, r in links.iterrows()
        ]
        lines.append("")
    ridge = df.drop_duplicates(["device", "dtype"])[
        [
            "device",
            "dtype",
            "mem_bw_gbps",
            "dense_tflops",
            "ridge_dense",
            "sparse_tflops",
            "ridge_sparse",
        ]
    ]
    ridge = ridge.astype(object).where(ridge.notna(), None)
    lines += [
        "#### Ridge points (FLOP/byte) = peak / memory bandwidth",
        "",
        md_table(ridge),
        "",
    ]
    return "\n".join(lines) + "\n"


def decode_steps(r: dict[str, Any], device: str) -> list[str]:
    """The napkin for one row, step by step (what ``hwlab napkin decode`` prints)."""
    steps = [
        f"weights: {r['params_b']:g}B params x {r['bytes_per_param']:g} bytes "
        f"({r['dtype']}) = {fmt_sig(r['weight_gb'])} GB",
        f"memory on {device}: {r['memory_gb']:g} GB, {100 * r['kv_headroom']:.0f}% kept for the KV "
        f"cache and runtime -> {fmt_sig(r['usable_gb'])} GB for weights -> "
        + (
            "fits on one device"
            if r["fits"]
            else f"does not fit on one; smallest power-of-two TP that fits: {r['min_tp'] or '> 64'}"
        ),
    ]
    if r["step_ms"] is not None:
        tp = r["min_tp"]
        per = f"{fmt_sig(r['weight_gb'])} GB" + (f" / TP {tp}" if tp > 1 else "")
        line = (
            f"decode step lower bound at batch 1: {per} / {r['mem_bw_gbps']:g} GB/s = "
            f"{fmt_sig(r['weights_ms'])} ms"
        )
        if tp > 1:
            line += (
                f" + {fmt_sig(r['allreduce_ms'])} ms of TP AllReduces ({r['link']}: "
                f"{r['link_latency_us']:g} µs each, {r['link_gbps']:g} GB/s) = "
                f"{fmt_sig(r['step_ms'])} ms"
            )
        steps.append(line + f" -> at most {fmt_sig(r['tokens_per_s'], 4)} tokens/s")
    if r["ridge_dense"] or r["ridge_sparse"]:
        parts = []
        if r["ridge_dense"]:
            parts.append(f"dense {r['dense_tflops']:g} TFLOP/s -> {fmt_sig(r['ridge_dense'], 4)}")
        if r["ridge_sparse"]:
            parts.append(
                f"sparse {r['sparse_tflops']:g} TFLOP/s -> {fmt_sig(r['ridge_sparse'], 4)}"
            )
        steps.append("ridge point (FLOP/byte, peak / bandwidth): " + "; ".join(parts))
    return steps


def write_napkin_decode(
    csv: str, md: str, *, catalog_path: str, kv_headroom: float = KV_HEADROOM
) -> None:
    """Snakemake entry: tables/napkin_decode.{csv,md} from the hardware catalog."""
    import pandas as pd

    from hwlab import catalog as cat
    from hwlab.io import write_table, write_text

    entries = cat.load(catalog_path)
    rows = decode_table_rows(entries, kv_headroom=kv_headroom)
    write_table(pd.DataFrame(rows), csv)
    write_text(md, decode_markdown(rows, writeup_decode_check(entries, kv_headroom), kv_headroom))
