#!/usr/bin/env bash
# One GPU session, one command: install what the image lacks, preflight, the smoke config,
# then the lab (config/h100.yaml) if time is left; everything it prints goes to $OUT/log,
# and ONE tarball of the results comes back in $OUT.
#
#   OUT=/some/folder tools/gpu-session.sh
#
# Run it in the repository root on the GPU host (the device tool runs commands there). It
# needs a wheelhouse folder carried with the tree (tools/wheelhouse.py builds it; see the
# README, "On an air-gapped GPU node"). Environment (all optional):
#   HWLAB_WHEELHOUSE   wheel folder                            (default: wheelhouse)
#   HWLAB_WORKDIR      Snakemake working folder for the runs   (default: the repository)
#   HWLAB_BUDGET_S     seconds this script may take in all     (default: 540)
#   HWLAB_LAB_MIN_S    seconds the lab needs to be started     (default: 150)
#   PYTHON             interpreter                             (default: python3)
# Output: $OUT/log and $OUT/hwlab-gpu-session.tar.gz (results/ of both runs, the preflight
# table, the job times, Snakemake's logs; the decode traces are left out if the tarball
# would pass 15 MB). On a host without a GPU the GPU parts are skipped (preflight's CUDA
# rows, and the lab), so the script can be checked anywhere.
set -o pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
: "${OUT:?OUT must name the folder whose files come back}"
PY=${PYTHON:-python3}
WHEELS=${HWLAB_WHEELHOUSE:-wheelhouse}
WORK=${HWLAB_WORKDIR:-$REPO}
BUDGET=${HWLAB_BUDGET_S:-540}
LAB_MIN=${HWLAB_LAB_MIN_S:-150}
PACK_S=40
T0=$(date +%s)
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
STAGE=$WORK/gpu-session
rm -rf "$STAGE"
mkdir -p "$STAGE"

elapsed() { echo $(($(date +%s) - T0)); }
left() { echo $((BUDGET - $(elapsed))); }
say() { echo "== [$(elapsed) s] $*"; }

smk() { # smk CONFIG NAME: one pipeline run, its job times recorded, bounded by the budget
  local config=$1 name=$2 limit=$(($(left) - PACK_S))
  if [ "$limit" -lt 30 ]; then
    say "only $(left) s left: $config is not run"
    return 1
  fi
  say "snakemake all --configfile $config (limit ${limit} s)"
  local t=$(date +%s)
  HWLAB_JOB_TIMES=$STAGE/jobtimes-$name timeout --kill-after=20 "$limit" \
    "$PY" -m snakemake -s "$REPO/Snakefile" -d "$WORK" --cores 1 --keep-going \
    all --configfile "$REPO/$config"
  local rc=$?
  local wall=$(($(date +%s) - t))
  say "$config: exit $rc after ${wall} s"
  "$PY" "$REPO/benchmarks/bench_rules.py" --from "$WORK" --jobtimes "$STAGE/jobtimes-$name" \
    --wall "$wall" --no-project | tee "$STAGE/rules-$name.txt"
  return $rc
}

pack() {
  say "packing results"
  local tarball=$OUT/hwlab-gpu-session.tar.gz
  local parts=(results gpu-session)
  [ -d "$WORK/.snakemake/log" ] && parts+=(.snakemake/log)
  tar -czf "$tarball" -C "$WORK" "${parts[@]}" 2>/dev/null
  if [ "$(stat -c %s "$tarball")" -gt 15000000 ]; then
    say "tarball over 15 MB: again without the decode traces (*.trace.json.gz)"
    tar -czf "$tarball" -C "$WORK" --exclude='*.trace.json.gz' "${parts[@]}" 2>/dev/null
  fi
  ls -l "$tarball"
}

main() {
  local status=0
  say "hwlab GPU session in $REPO (work folder $WORK), budget ${BUDGET} s"
  nvidia-smi 2>/dev/null || say "nvidia-smi: not available"
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'

  if [ -d "$WHEELS" ]; then
    say "installing from $WHEELS"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -r "$WHEELS/requirements.txt" ||
      { say "pip install into the interpreter failed: into $STAGE/site instead"
        "$PY" -m pip install -q --no-index --find-links "$WHEELS" --target "$STAGE/site" \
          -r "$WHEELS/requirements.txt" && export PYTHONPATH=$STAGE/site${PYTHONPATH:+:$PYTHONPATH}; }
  else
    say "no wheelhouse at $WHEELS: using what is installed"
  fi
  "$PY" -c 'import snakemake, jsonschema' || { say "snakemake/jsonschema missing: cannot run"; return 3; }

  local ncu_py
  ncu_py=$(ls -d /opt/nvidia/nsight-compute/*/extras/python 2>/dev/null | sort -V | tail -1)
  if [ -n "$ncu_py" ]; then
    export PYTHONPATH=$ncu_py${PYTHONPATH:+:$PYTHONPATH}
    say "ncu_report from $ncu_py"
  fi

  say "preflight"
  "$PY" -m hwlab.cli preflight --out "$STAGE/preflight" || { status=1; say "preflight: a row failed"; }

  smk config/gpu-smoke.yaml smoke || status=1

  local gpu
  gpu=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)
  if [ "$gpu" != 1 ]; then
    say "no GPU here: config/h100.yaml is not run"
  elif [ "$(left)" -lt "$LAB_MIN" ]; then
    say "only $(left) s left (< ${LAB_MIN} s): config/h100.yaml is not run"
  else
    smk config/h100.yaml lab || status=1
  fi
  return $status
}

main 2>&1 | tee "$OUT/log"
rc=${PIPESTATUS[0]}
pack 2>&1 | tee -a "$OUT/log"
echo "== [$(elapsed) s] gpu-session: exit $rc" | tee -a "$OUT/log"
exit "$rc"
