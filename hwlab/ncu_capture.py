"""Lab 1b capture: run a target process under Nsight Compute's ``ncu``, or record why not.

Method:
- The skip decision comes first and is cheap: no GPU (``device.json`` kind is not cuda) or
  no ``ncu`` binary (``ncu.ncu_path``, or with ``auto`` the PATH, ``/usr/local/cuda/bin``
  and ``/opt/nvidia/nsight-compute/*/``, newest version first) -> ``status: skipped`` with
  the reason. This job never imports torch; only the target process does, under ncu.
- The command (:func:`ncu_command`): ``--profile-from-start off`` so only the region the
  target brackets with ``torch.cuda.profiler.start()/stop()`` (cudaProfilerStart/Stop) is
  profiled; ``--kernel-name regex:…`` and ``--launch-count`` pick the launches;
  ``--clock-control`` (``base``, ncu's default, locks the clocks to base; ``none`` leaves
  them free) and ``--cache-control`` (``all``, ncu's default, flushes caches before every
  replay pass; ``none`` keeps them) are recorded; the mapping's sections and explicit
  metrics (``config/ncu_metrics.yaml``); ``-o`` the report, ``-f``.
- Outcome: ``ok`` when the report holds at least one launch. ncu refusing to profile
  (``ERR_NVGPUCTRPERM``: no permission for the GPU's performance counters, or an
  unsupported device) -> ``skipped`` with ncu's own message. Anything else (the target
  failed, no kernel matched the filter) -> ``failed`` with ncu's messages. If ncu rejects
  an explicit metric name, the capture is retried once with the sections alone; if it
  refuses the clock control (an error naming the clocks), once with ``--clock-control
  none`` (``clock_control`` is then what ran, ``clock_control_requested`` what was asked,
  ``clock_control_fallback`` why). The job writes its record in every case, so the run
  completes; the report is written to a temporary name and moved into place only when it
  holds launches. The report is read back with ``ncu_report``
  (:func:`hwlab.ncu.import_ncu_report`: installed, else Nsight Compute's extras/python);
  if neither imports, the record is ``failed`` with that reason and the report is kept
  beside it (``report_unread``) for a host that can read it.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwlab.io import FAILED, OK, SKIPPED, read_json, record, with_window, write_json

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("hwlab.ncu")
NCU_DIRS = ("/usr/local/cuda/bin", "/opt/nvidia/nsight-compute/*")
# ncu error text that means "this machine will not let ncu profile", not a broken run
REFUSALS = ("ERR_NVGPUCTRPERM", "not supported on this device", "is not supported")
TIMEOUT_S = 3600
OUTPUT_TAIL_LINES = 40


# ---- finding ncu -------------------------------------------------------------------------
def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(path.rstrip("/")).name))


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_ncu(
    setting: str = "auto", *, path: str | None = None, dirs: Sequence[str] = NCU_DIRS
) -> tuple[str | None, list[str]]:
    """(path of the ncu binary or None, where it looked). ``setting`` is ``auto`` or a path;
    ``path`` overrides $PATH; ``dirs`` are folders or globs searched after it."""
    if setting != "auto":
        p = Path(setting).expanduser()
        if p.is_dir():
            p = p / "ncu"
        return (str(p) if _executable(p) else None), [str(setting)]
    searched = ["PATH"]
    found = shutil.which("ncu", path=path)
    if found:
        return found, searched
    for pattern in dirs:
        searched.append(pattern.rstrip("/") + "/")
        matches = glob.glob(pattern) if glob.has_magic(pattern) else [pattern]
        for d in sorted(matches, key=_version_key, reverse=True):
            if _executable(Path(d) / "ncu"):
                return str(Path(d) / "ncu"), searched
    return None, searched


def skip_reason(device_info: dict[str, Any], ncu: str | None, searched: list[str], setting: str):
    """Why nothing can be captured here (no GPU, no ncu), or None."""
    reasons = []
    kind = device_info.get("kind")
    if kind != "cuda":
        reasons.append(f"no GPU (device kind {kind})")
    if ncu is None:
        if setting == "auto":
            reasons.append(f"ncu not found (searched {', '.join(searched)})")
        else:
            reasons.append(f"ncu not found at {setting} (config ncu.ncu_path)")
    return "; ".join(reasons) or None


def ncu_version(ncu: str) -> str | None:
    try:
        out = subprocess.run(
            [ncu, "--version"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[-1].strip() if out else None


# ---- the command -------------------------------------------------------------------------
def ncu_command(
    ncu: str,
    *,
    report: str | os.PathLike,
    target: Sequence[str],
    kernel_regex: str | None,
    launch_count: int,
    clock_control: str,
    cache_control: str,
    sections: Sequence[str],
    metrics: Sequence[str],
) -> list[str]:
    """The ncu command line (see the module docstring). ``kernel_regex`` None: every kernel
    in the profiled region."""
    cmd = [str(ncu), "--profile-from-start", "off"]
    if kernel_regex:
        cmd += ["--kernel-name", f"regex:{kernel_regex}"]
    cmd += ["--launch-count", str(int(launch_count))]
    cmd += ["--clock-control", clock_control, "--cache-control", cache_control]
    for s in sections:
        cmd += ["--section", s]
    if metrics:
        cmd += ["--metrics", ",".join(metrics)]
    cmd += ["-o", str(report), "-f", *target]
    return cmd


# ---- reading ncu's verdict ---------------------------------------------------------------
def ncu_messages(output: str) -> list[str]:
    """ncu's own ==ERROR== / ==WARNING== lines, in order."""
    return [
        line.strip()
        for line in output.splitlines()
        if line.lstrip().startswith(("==ERROR==", "==WARNING=="))
    ]


def _strip(line: str) -> str:
    return re.sub(r"^==(ERROR|WARNING)==\s*", "", line.strip())


def outcome(returncode: int | None, output: str, launches: int) -> tuple[str, str | None]:
    """(status, reason) of one ncu run from its exit code, its output and how many
    launches its report holds."""
    if launches > 0:
        return OK, None
    msgs = ncu_messages(output)
    errors = [m for m in msgs if m.startswith("==ERROR==")]
    for m in errors:
        if any(r in m for r in REFUSALS):
            return SKIPPED, f"ncu refused to profile: {_strip(m)}"
    if errors:
        return FAILED, "ncu: " + " | ".join(_strip(m) for m in errors)
    warnings = [_strip(m) for m in msgs]
    said = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("==")]
    target = f"; the target's last words: {said[-1]}" if said else ""
    if any("No kernels were profiled" in w for w in warnings):
        return FAILED, "ncu profiled no kernel: " + " | ".join(warnings) + target
    if returncode:
        return FAILED, f"ncu exited with status {returncode}{target or ' (no output)'}"
    return FAILED, f"ncu wrote no report with a kernel launch{target or ' (no output)'}"


def metric_rejected(output: str) -> bool:
    """ncu rejected a metric name (old ncu, other architecture): retry without --metrics."""
    return any("metric" in m.lower() for m in ncu_messages(output) if m.startswith("==ERROR=="))


def clock_refused(output: str) -> bool:
    """ncu refused the requested clock control (an error naming the clocks): retry with
    ``--clock-control none``, which leaves the clocks alone."""
    return any("clock" in m.lower() for m in ncu_messages(output) if m.startswith("==ERROR=="))


def clock_messages(output: str) -> list[str]:
    """ncu's messages about the clocks (e.g. a warning that it could not lock them)."""
    return [_strip(m) for m in ncu_messages(output) if "clock" in m.lower()]


# ---- one capture -------------------------------------------------------------------------
def _count_launches(report: Path, ncu: str | None = None) -> tuple[int, dict[str, int], str | None]:
    """(launches, kernel -> launches, why the report could not be read: ncu_report missing)."""
    from hwlab.ncu import NcuReportMissing, import_ncu_report, read_report

    try:
        import_ncu_report(ncu)
    except NcuReportMissing as e:
        return 0, {}, str(e)
    try:
        launches = read_report(report)
    except (FileNotFoundError, ValueError):
        return 0, {}, None
    return len(launches), dict(Counter(la.kernel for la in launches)), None


def _run(cmd: list[str], env: dict[str, str]) -> tuple[int | None, str]:
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        return None, out + f"\n==ERROR== ncu did not finish within {TIMEOUT_S} s"
    print(proc.stdout, file=sys.stderr, flush=True)
    return proc.returncode, proc.stdout


def capture(
    out_json: str | os.PathLike,
    *,
    device_json: str | os.PathLike,
    mapping_path: str | os.PathLike,
    target: list[str] | None,
    kernel_regex: str | None,
    launch_count: int,
    clock_control: str,
    cache_control: str,
    ncu_path: str = "auto",
    fields: dict[str, Any] | None = None,
    target_problem: str | None = None,
) -> dict[str, Any]:
    """Capture one report beside ``out_json`` (same stem, ``.ncu-rep``) and write the record.

    ``target`` is the target process's argv; ``target_problem`` a reason the target cannot
    run (e.g. no model manifest), checked after the skip decision.
    """
    from hwlab.ncu import load_mapping

    start = time.time()
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    report = out_json.with_suffix(".ncu-rep")
    partial = out_json.with_name(f".{out_json.stem}.partial.ncu-rep")
    for stale in (report, partial):  # never leave an old report beside a new record
        stale.unlink(missing_ok=True)
    info = read_json(device_json)
    ncu, searched = find_ncu(ncu_path)
    base = {
        **(fields or {}),
        "kernel_regex": kernel_regex,
        "launch_count": launch_count,
        "clock_control": clock_control,
        "cache_control": cache_control,
        "device_kind": info.get("kind"),
        "device_name": info.get("name"),
        "ncu": ncu,
        "ncu_searched": searched,
        "report": None,
    }
    reason = skip_reason(info, ncu, searched, ncu_path)
    if reason:
        log.info("skipped: %s", reason)
        rec = record(SKIPPED, reason, **base)
        write_json(out_json, with_window(rec, start))
        return rec
    if target_problem or not target:
        log.info("failed: %s", target_problem)
        rec = record(FAILED, target_problem or "no target process to profile", **base)
        write_json(out_json, with_window(rec, start))
        return rec

    mapping = load_mapping(mapping_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    metrics = mapping.requested()
    base["ncu_version"] = ncu_version(ncu)
    base["clock_control_requested"] = clock_control
    clock = clock_control
    attempts = []
    unread = None
    while True:
        cmd = ncu_command(
            ncu,
            report=partial,
            target=target,
            kernel_regex=kernel_regex,
            launch_count=launch_count,
            clock_control=clock,
            cache_control=cache_control,
            sections=mapping.sections,
            metrics=metrics,
        )
        rc, output = _run(cmd, env)
        n, kernels, unread = _count_launches(partial, ncu) if partial.exists() else (0, {}, None)
        status, why = outcome(rc, output, n)
        attempts.append({"command": cmd, "returncode": rc, "messages": ncu_messages(output)})
        if unread:
            break
        if status != OK and metrics and metric_rejected(output):
            base["metrics_dropped"] = {"metrics": metrics, "because": why}
            metrics = []
            continue
        if status != OK and clock != "none" and clock_refused(output):
            base["clock_control_fallback"] = {"from": clock, "to": "none", "because": why}
            clock = "none"
            continue
        break
    base.update(
        clock_control=clock,
        clock_messages=clock_messages(output),
        command=cmd,
        returncode=rc,
        ncu_messages=ncu_messages(output),
        output_tail=output.strip().splitlines()[-OUTPUT_TAIL_LINES:],
        attempts=attempts,
    )
    if unread:
        status, why = FAILED, f"ncu wrote a report but it cannot be read here: {unread}"
        os.replace(partial, report)
        base.update(report_unread=report.name)
    elif status == OK:
        os.replace(partial, report)
        base.update(report=report.name, launches=n, kernels=kernels)
    else:
        partial.unlink(missing_ok=True)
    log.info("%s%s", status, f": {why}" if why else f": {n} launches in {report}")
    rec = record(status, why, **base)
    write_json(out_json, with_window(rec, start))
    return rec


# ---- the two kinds of capture ------------------------------------------------------------
def _device_arg(device_json: str | os.PathLike) -> str:
    info = read_json(device_json)
    return f"cuda:{info.get('index', 0)}"


def capture_decode(
    out_json: str,
    *,
    device_json: str,
    mapping_path: str,
    manifest: str | None,
    batch: int,
    prompt_len: int,
    warmup_steps: int,
    decode_steps: int,
    model: str,
    dtype: str,
    seed: int,
    kernel_regex: str,
    launch_count: int,
    clock_control: str,
    cache_control: str,
    ncu_path: str = "auto",
    sdpa_backend: str = "flash",
) -> dict[str, Any]:
    """Lab 1b: decode steps of the run's model at ``batch`` under ncu (attention kernels)."""
    fields = {
        "kind": "decode",
        "batch": batch,
        "model": model,
        "dtype": dtype,
        "sdpa_backend": sdpa_backend,
        "prompt_len": prompt_len,
        "warmup_steps": warmup_steps,
        "decode_steps": decode_steps,
        "seed": seed,
        "manifest": manifest,
    }
    target = None
    problem = None
    if not manifest or not Path(manifest).is_file():
        problem = f"model manifest {manifest!r} does not exist (the model rule's output)"
    else:
        target = [
            sys.executable, "-m", "hwlab.ncu_target", "decode",
            "--manifest", str(Path(manifest).resolve()),
            "--device", _device_arg(device_json),
            "--batch", str(batch),
            "--prompt-len", str(prompt_len),
            "--warmup-steps", str(warmup_steps),
            "--decode-steps", str(decode_steps),
            "--dtype", dtype,
            "--seed", str(seed),
            "--sdpa-backend", sdpa_backend,
        ]  # fmt: skip
    return capture(
        out_json,
        device_json=device_json,
        mapping_path=mapping_path,
        target=target,
        target_problem=problem,
        kernel_regex=kernel_regex,
        launch_count=launch_count,
        clock_control=clock_control,
        cache_control=cache_control,
        ncu_path=ncu_path,
        fields=fields,
    )


def capture_gemm(
    out_json: str,
    *,
    device_json: str,
    mapping_path: str,
    shape: str,
    M: int,
    N: int,
    K: int,
    dtype: str,
    seed: int,
    launch_count: int,
    clock_control: str,
    cache_control: str,
    ncu_path: str = "auto",
) -> dict[str, Any]:
    """Lab 2: the kernels of one GEMM call (the sweep's op) under ncu: true DRAM bytes."""
    fields = {"kind": "gemm", "shape": shape, "M": M, "N": N, "K": K, "dtype": dtype, "seed": seed}
    target = [
        sys.executable, "-m", "hwlab.ncu_target", "gemm",
        "--device", _device_arg(device_json),
        "--M", str(M), "--N", str(N), "--K", str(K),
        "--dtype", dtype,
        "--seed", str(seed),
    ]  # fmt: skip
    return capture(
        out_json,
        device_json=device_json,
        mapping_path=mapping_path,
        target=target,
        kernel_regex=None,
        launch_count=launch_count,
        clock_control=clock_control,
        cache_control=cache_control,
        ncu_path=ncu_path,
        fields=fields,
    )
