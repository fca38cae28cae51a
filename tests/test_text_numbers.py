"""Numbers in the regenerated writeup never print in exponent notation.

Python's ``%g``/``.3g`` turn 3350 into ``3.35e+03`` and a 150x ratio at ``.2g`` into
``1.5e+02``: on a GPU (thousands of GB/s) or a slow host (ratios over 100) the writeup
would read like a log. The modules that write findings, tables and their notes format
significant digits through :func:`hwlab.io.fmt_sig`; this guard keeps it that way.
"""

from __future__ import annotations

import re

import pytest
from helpers import REPO

from hwlab.io import fmt_sig

TEXT_MODULES = [
    "allreduce_table",
    "decode_findings",
    "decode_model",
    "decode_tables",
    "findings",
    "headlines",
    "napkin",
    "questions",
    "roofline",
    "ncu",
    "ncu_plot",
    "hierarchy/report",
    "hierarchy/table",
]
G_SPEC = re.compile(r"\{[^{}]+:[,]?\.\d+g\}|%\.\d+g")


@pytest.mark.parametrize("module", TEXT_MODULES)
def test_no_g_format_in_text_modules(module):
    src = (REPO / "hwlab" / f"{module}.py").read_text()
    hits = [
        f"{i}: {line.strip()}"
        for i, line in enumerate(src.splitlines(), 1)
        if G_SPEC.search(line) and "log" not in line
    ]
    assert not hits, hits


@pytest.mark.parametrize(
    "x, digits, text",
    [
        (3350.4, 3, "3,350"),
        (150.2, 2, "150"),
        (999.7, 3, "1,000"),
        (0.0123, 3, "0.0123"),
        (1.0744, 4, "1.074"),
        (None, 3, "—"),
    ],
)
def test_fmt_sig(x, digits, text):
    assert fmt_sig(x, digits) == text
