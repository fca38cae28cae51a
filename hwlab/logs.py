"""Logging for script jobs, and the reason a failed job gives.

- :func:`to_log`: stderr (Python's and C libraries') and ``logging`` go to the job's log
  file, so a failed job's reason is in ``logs/`` and the console stays readable.
- :func:`last_reason`: the one line of a log that says why the job failed (the exception
  message, not the traceback's frames); the Snakefile's ``onerror`` prints it for every
  failed job, so the console names the cause.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path


def to_log(path: str) -> logging.Logger:
    fh = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    os.dup2(fh.fileno(), 2)
    sys.stderr = fh
    logging.basicConfig(
        stream=fh,
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("hwlab")
    from hwlab import lock

    for note in lock.NOTES:  # what the job printed on the console while it waited
        log.info("%s", note)
    return log


# lines that never carry the reason: traceback frames and markers, separators, warnings
_NOISE = re.compile(
    r"^(Traceback \(most recent call last\):|File \"|\s*[~^]+\s*$|[-=*#_]{3,}\s*$|"
    r"During handling of the above exception|The above exception was the direct cause|"
    r"\S+Warning: |warnings\.warn\(|return forward_call|\[W\d|RuleException:?$|"
    r"CalledProcessError in |Shutting down|Exiting because|Removing output files|"
    r"\[(Mon|Tue|Wed|Thu|Fri|Sat|Sun) )"
)
_LOGPREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (ERROR|CRITICAL|WARNING|INFO) \S+: ")


def last_reason(text: str) -> str | None:
    """The last meaningful line of a job's log (see the module docstring), or None."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    for ln in reversed(lines):
        s = ln.strip()
        if not s or _NOISE.match(s) or (ln.startswith((" ", "\t")) and not _exc(s)):
            continue
        return _LOGPREFIX.sub("", s)
    return None


def _exc(line: str) -> bool:
    return re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b", line) is not None


def log_reason(path: str | os.PathLike, tail_bytes: int = 65536) -> str | None:
    """:func:`last_reason` of a log file (its last ``tail_bytes``); None if empty/absent."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return last_reason(text)


MAX_REASON = 300
_ERROR_IN = re.compile(r"^Error in rule (?P<rule>[\w-]+):")
_LOG_LINE = re.compile(r"^\s+log: (?P<logs>.+?)(?: \(check log file\(s\) for error details\))?$")
_WILDCARDS = re.compile(r"^\s+wildcards: (?P<wc>.+)$")
_MESSAGE = re.compile(r"^\s+message: (?P<msg>.+)$")


def failed_jobs(snakemake_log: str) -> list[dict[str, str]]:
    """Failed jobs named in Snakemake's own log: rule, wildcards and log files of each."""
    jobs: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    for ln in snakemake_log.splitlines():
        m = _ERROR_IN.match(ln)
        if m:
            cur = {"rule": m["rule"], "logs": "", "wildcards": "", "message": ""}
            jobs.append(cur)
            continue
        if cur is None:
            continue
        if ln and not ln.startswith((" ", "\t")):
            cur = None
            continue
        for rx, key in ((_LOG_LINE, "logs"), (_WILDCARDS, "wildcards"), (_MESSAGE, "message")):
            m = rx.match(ln)
            if m and not cur[key]:
                cur[key] = m.group(1)
    seen, out = set(), []
    for j in jobs:  # a job is listed again when Snakemake shuts down
        key = (j["rule"], j["wildcards"], j["logs"])
        if key not in seen:
            seen.add(key)
            out.append(j)
    return out


def failure_report(snakemake_log, workdir: str | os.PathLike = ".") -> list[str]:
    """One line per failed job: rule (wildcards): the reason from its log (and the log).

    ``snakemake_log``: Snakemake's own log file (or the list of them ``onerror`` gets).
    """
    paths = [snakemake_log] if isinstance(snakemake_log, str | os.PathLike) else snakemake_log
    text = ""
    for p in paths or []:
        try:
            text += Path(p).read_text(errors="replace") + "\n"
        except OSError:
            continue
    lines = []
    for j in failed_jobs(text):
        logs = [s.strip() for s in j["logs"].split(",") if s.strip()]
        reason = None
        for lg in logs:
            p = Path(lg) if Path(lg).is_absolute() else Path(workdir) / lg
            reason = log_reason(p)
            if reason:
                break
        if reason is None:
            reason = (
                "no reason in its log (killed, or it failed before writing any)"
                if logs
                else "no log file"
            )
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        where = f" ({j['wildcards']})" if j["wildcards"] else ""
        see = f" [log: {logs[0]}]" if logs else ""
        lines.append(f"hwlab: {j['rule']}{where} failed: {reason}{see}")
    return lines
