#!/usr/bin/env python3
"""Build a wheelhouse of what hwlab needs beyond a CUDA PyTorch image, for another host.

    python tools/wheelhouse.py --python-version 3.12 --platform manylinux_2_28_x86_64 \\
        --out wheelhouse                      # default: snakemake and jsonschema, pinned

A GPU image that ships torch, transformers, pandas, matplotlib, PyYAML, tabulate,
huggingface-hub and nvidia-ml-py lacks snakemake (and its dependencies) and jsonschema;
ncu_report comes from Nsight Compute's own extras/python. This script resolves those
requirements here (``pip download``, this Python), then makes every file usable on the
target: pure-Python wheels as they are, platform wheels downloaded again for the target's
Python and platform (same version, ``--only-binary``), pure-Python sources built into
wheels (``pip wheel``). It writes ``requirements.txt`` (the pinned top-level requirements)
beside them, refuses anything named torch / nvidia-* / triton (never CUDA libraries), and
fails if the folder exceeds --max-mb. Install there, without network:

    python3 -m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_REQUIREMENTS = ("snakemake", "jsonschema")
FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia[-_].*|cuda[-_].*)$", re.I)
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_12_x86_64",
    "manylinux2010_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)


def pinned(requirements: list[str]) -> list[str]:
    """Pin a bare name to the version installed here (what hwlab was tested with)."""
    out = []
    for r in requirements:
        if re.fullmatch(r"[A-Za-z0-9_.-]+", r):
            with contextlib.suppress(md.PackageNotFoundError):
                r = f"{r}=={md.version(r)}"
        out.append(r)
    return out


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def dist_name_version(filename: str) -> tuple[str, str]:
    """(name, version) of a wheel or sdist file name."""
    stem = re.sub(r"\.(whl|tar\.gz|zip|tar\.bz2)$", "", filename)
    if filename.endswith(".whl"):
        name, version = stem.split("-")[:2]
    else:
        name, version = stem.rsplit("-", 1)
    return name, version


def target_platforms(platform: str) -> list[str]:
    """The platform asked for and every older manylinux tag of its architecture."""
    m = re.match(r"manylinux_2_(\d+)_(\w+)$", platform)
    if not m:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    tags = [p.replace("x86_64", arch) for p in PLATFORMS]
    keep = []
    for t in tags:
        mm = re.match(r"manylinux_2_(\d+)_", t)
        if mm and int(mm.group(1)) > glibc:
            continue
        keep.append(t)
    return [platform, *[t for t in keep if t != platform]]


def build(requirements: list[str], out: Path, python_version: str, platform: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    pyv = python_version.replace(".", "")
    with tempfile.TemporaryDirectory() as tmp:
        native = Path(tmp) / "native"
        pip("download", "-q", "--prefer-binary", "-d", str(native), *requirements)
        for f in sorted(native.iterdir()):
            name, version = dist_name_version(f.name)
            if FORBIDDEN.match(name):
                raise SystemExit(f"wheelhouse: {f.name} is a torch/CUDA package; refusing it")
            if f.name.endswith("-none-any.whl"):
                shutil.copy2(f, out / f.name)
            elif f.suffix == ".whl":
                plat = [a for p in target_platforms(platform) for a in ("--platform", p)]
                pip(
                    "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp",
                    "--abi", f"cp{pyv}", "--abi", "abi3", "--abi", "none",
                    *plat, "-d", str(out), f"{name}=={version}",
                )  # fmt: skip
            else:  # a source distribution: build it; only a pure-Python wheel travels
                built = Path(tmp) / "built"
                pip("wheel", "-q", "--no-deps", "-w", str(built), str(f))
                for w in built.glob("*.whl"):
                    if not w.name.endswith("-none-any.whl"):
                        raise SystemExit(f"wheelhouse: {f.name} builds a platform wheel {w.name}")
                    shutil.move(str(w), out / w.name)
    return sorted(out.glob("*.whl"))


def check(out: Path, requirements: list[str], python_version: str, platform: str) -> None:
    """Resolve the requirements from the wheelhouse alone, as the target's pip would
    (``pip install --dry-run --no-index`` for that Python and platform): nothing missing."""
    pyv = python_version.replace(".", "")
    plat = [a for p in target_platforms(platform) for a in ("--platform", p)]
    with tempfile.TemporaryDirectory() as tmp:
        pip(
            "install", "-q", "--dry-run", "--no-index", "--find-links", str(out),
            "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            "--abi", f"cp{pyv}", "--abi", "abi3", "--abi", "none", *plat,
            "--target", tmp, *requirements,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("requirements", nargs="*", default=list(DEFAULT_REQUIREMENTS))
    ap.add_argument("--python-version", default="3.12", help="target Python (default 3.12)")
    ap.add_argument(
        "--platform", default="manylinux_2_28_x86_64", help="target platform tag (and older)"
    )
    ap.add_argument("--out", default="wheelhouse", help="folder (default ./wheelhouse)")
    ap.add_argument("--max-mb", type=float, default=40.0)
    a = ap.parse_args(argv)
    reqs = pinned(a.requirements)
    out = Path(a.out)
    wheels = build(reqs, out, a.python_version, a.platform)
    (out / "requirements.txt").write_text("\n".join(reqs) + "\n")
    check(out, reqs, a.python_version, a.platform)
    mb = sum(w.stat().st_size for w in wheels) / 1e6
    print(f"wheelhouse: {len(wheels)} wheels, {mb:.1f} MB in {out}")
    print(f"  for Python {a.python_version} on {a.platform} (and older manylinux)")
    print(
        "install:",
        f"python3 -m pip install --no-index --find-links {out} -r {out}/requirements.txt",
    )
    if mb > a.max_mb:
        print(f"wheelhouse: {mb:.1f} MB is over --max-mb {a.max_mb}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
