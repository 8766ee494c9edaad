#!/usr/bin/env bash
# GPU check (issue 12): on a machine with an NVIDIA GPU, in about 10 minutes,
#   1. checks the GPU (nvidia-smi) and gets a Python with a CUDA build of torch: the venv
#      $GPU_VENV (default .venv-gpu) is reused when its torch sees the GPU, otherwise created
#      with `pip install $TORCH_SPEC` (default torch==2.13.0: on Linux x86-64 the package index
#      serves the CUDA build) and `pip install -e ".[test]"`;
#   2. runs the tests whose name has "cuda" (the device-parametrized cases, which exist where
#      torch.cuda.is_available()), then
#   3. `python -m benchmarks.tilt --device cuda` (Gaussian tilt + digits fine-tuning on the GPU),
#   4. one frontier point on digits: `python -m benchmarks.frontier --suite smoke --tasks
#      digits-logit --methods sqdf --alphas 1 --seeds 0` -- on the CPU: the benchmark runner has
#      no device option, so this checks the benchmark path under the CUDA build of torch,
#   5. the whole test suite with the time left (stopped with SIGINT at the budget, so pytest
#      still reports what ran);
# and writes $GPU_CHECK_OUT/report.md (default runs/gpu-check): GPU model, torch build,
# pass/fail counts, the tilt JSON, the frontier JSON, seconds per step.
#
# Usage: bash scripts/gpu_check.sh   or   make gpu-check
# Environment: GPU_CHECK_OUT, GPU_VENV, PYTHON (python3), TORCH_SPEC, TORCH_PIP_ARGS (more pip
# arguments for the torch install, e.g. an --index-url of CUDA wheels), GPU_CHECK_BUDGET
# (seconds for the whole check, default 600), PYTEST_ARGS (tests of step 5, default: all).
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU with the current venv: a check of this
# script itself, not of a GPU (the report says so).
# GPU_CHECK_PYTHON: a Python that already has a CUDA torch and the project's dependencies (e.g. a
# machine with no network, the missing packages installed from carried wheels): used as it is,
# nothing is installed; the project is imported from this checkout (PYTHONPATH).
# Exit status: 0 all steps passed, 1 a step failed, 2 no usable GPU / CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${GPU_CHECK_OUT:-runs/gpu-check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
GPU_VENV=${GPU_VENV:-.venv-gpu}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_PIP_ARGS=${TORCH_PIP_ARGS:-}
BUDGET=${GPU_CHECK_BUDGET:-600}
PYTEST_ARGS=${PYTEST_ARGS:-}
START=$SECONDS
mkdir -p "$OUT"
REPORT="$OUT/report.md"
STEPS="$OUT/steps.tsv"
: >"$STEPS"

log() { echo "gpu_check: $*" >&2; }
die() {
    log "FAILED: $*"
    printf '# GPU check: FAILED\n\n%s\n' "$*" >"$REPORT"
    exit 2
}
left() { echo $((BUDGET - (SECONDS - START))); }

# run_step NAME TIMEOUT_S LOGFILE CMD...: runs CMD under timeout (SIGINT first, SIGKILL 30 s
# later), records "name<TAB>rc<TAB>seconds" in steps.tsv; never stops the script.
run_step() {
    local name=$1 limit=$2 logfile=$3 t0=$SECONDS rc=0
    shift 3
    log "$name (at most ${limit} s) ..."
    timeout -s INT -k 30 "$limit" "$@" >"$logfile" 2>&1 || rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - t0)) >>"$STEPS"
    log "$name: exit $rc after $((SECONDS - t0)) s (log: $logfile)"
}

# 1. The GPU and a CUDA torch.
if [ "$DEVICE" = cpu ]; then
    GPU_INFO="none (GPU_CHECK_DEVICE=cpu: a check of this script, not of a GPU)"
    PY=${GPU_CHECK_PYTHON:-.venv/bin/python}
    [ -x "$PY" ] || die "GPU_CHECK_DEVICE=cpu needs an installed venv at $PY (make install)"
else
    command -v nvidia-smi >/dev/null 2>&1 ||
        die "no NVIDIA GPU here: nvidia-smi is not installed (this check needs a CUDA machine)"
    GPU_INFO=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1) ||
        die "nvidia-smi failed: $GPU_INFO"
    [ -n "$GPU_INFO" ] || die "nvidia-smi lists no GPU"
    log "GPU: $GPU_INFO"
    PY="${GPU_CHECK_PYTHON:-$GPU_VENV/bin/python}"
    if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
        log "using $PY as it is (GPU_CHECK_PYTHON; nothing installed)"
    elif [ -x "$PY" ] && "$PY" -c 'import torch, pytest, sqdf_bbo; assert torch.cuda.is_available()' 2>/dev/null; then
        log "reusing $GPU_VENV (its torch sees the GPU)"
    else
        t0=$SECONDS
        log "installing $TORCH_SPEC and the project into $GPU_VENV ..."
        [ -x "$PY" ] || "$PYTHON" -m venv "$GPU_VENV" || die "could not create $GPU_VENV with $PYTHON"
        # shellcheck disable=SC2086 # TORCH_PIP_ARGS is a list of arguments
        "$PY" -m pip install -q "$TORCH_SPEC" $TORCH_PIP_ARGS >"$OUT/install.log" 2>&1 ||
            die "pip install $TORCH_SPEC failed (see $OUT/install.log)"
        "$PY" -m pip install -q -e ".[test]" >>"$OUT/install.log" 2>&1 ||
            die "pip install -e .[test] failed (see $OUT/install.log)"
        printf 'install\t0\t%s\n' $((SECONDS - t0)) >>"$STEPS"
    fi
    "$PY" - <<'EOF' || die "$("$PY" -c 'import torch; print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) does not see the GPU: install a CUDA build of torch into the venv (TORCH_SPEC / TORCH_PIP_ARGS)")' 2>&1)"
import torch
assert torch.version.cuda is not None and torch.cuda.is_available()
x = torch.ones(2, device="cuda")
assert float((x + x).sum().cpu()) == 4.0
EOF
fi
TORCH_INFO=$("$PY" -c 'import torch
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, device 0: {name}")')
log "$TORCH_INFO"

# 2.-5. The steps (each with its own time limit inside the budget).
run_step "tests -k $DEVICE" 120 "$OUT/pytest_device.log" \
    "$PY" -m pytest -q -p no:cacheprovider -k "$DEVICE" -m "not slow" \
    --junitxml="$OUT/pytest_device.xml"
run_step "benchmarks.tilt --device $DEVICE" 240 "$OUT/tilt.log" \
    "$PY" -m benchmarks.tilt --device "$DEVICE"
run_step "frontier point digits-logit sqdf a1 (CPU)" 150 "$OUT/frontier.log" \
    "$PY" -m benchmarks.frontier --suite smoke --tasks digits-logit --methods sqdf \
    --alphas 1 --seeds 0 --workers 1 --no-progress --out "$OUT/frontier"
limit=$(left)
if [ "$limit" -lt 60 ]; then limit=60; fi
# shellcheck disable=SC2086 # PYTEST_ARGS is a list of arguments
run_step "full test suite" "$limit" "$OUT/pytest.log" \
    "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/pytest.xml" $PYTEST_ARGS

# Report.
"$PY" - "$OUT" "$GPU_INFO" "$TORCH_INFO" "$DEVICE" $((SECONDS - START)) <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, gpu, torch_info, device, total = Path(sys.argv[1]), *sys.argv[2:5], int(sys.argv[5])


def junit(path: Path, device: str) -> tuple[str, list[str]]:
    """'N passed, N failed, N errors, N skipped' and the device cases' outcomes of a JUnit XML."""
    if not path.is_file():
        return "no result (pytest was stopped before writing its report)", []
    cases = ET.parse(path).getroot().iter("testcase")
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    on_device = []
    for case in cases:
        kinds = {child.tag for child in case}
        kind = (
            "failed" if "failure" in kinds else "errors" if "error" in kinds
            else "skipped" if "skipped" in kinds else "passed"
        )
        counts[kind] += 1
        if device in case.get("name", ""):
            on_device.append(f"{case.get('classname')}::{case.get('name')}: {kind}")
    return ", ".join(f"{v} {k}" for k, v in counts.items()), on_device


def last_json(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    for line in reversed(lines):
        try:
            return json.dumps(json.loads(line), indent=1)
        except ValueError:
            continue
    return "(no JSON line: see " + path.name + ")"


steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
lines = [
    "# GPU check",
    "",
    f"- GPU (nvidia-smi): {gpu}",
    f"- {torch_info}",
    f"- device of the GPU steps: {device}; total {total} s",
    "",
    "| step | exit | seconds |",
    "|---|---|---|",
    *(f"| {name} | {rc} | {s} |" for name, rc, s in steps),
    "",
    "Exit 124: the step was stopped at its time limit (its counts below are partial).",
    "",
]
for title, xml in ((f"tests -k {device}", "pytest_device.xml"), ("full test suite", "pytest.xml")):
    counts, cases = junit(out / xml, device)
    lines += [f"## {title}: {counts}", ""] + [f"- {c}" for c in cases] + [""]
lines += ["## benchmarks.tilt (last JSON line)", "", "```json", last_json(out / "tilt.log"), "```", ""]
table = out / "frontier" / "frontier.csv"
lines += [
    "## frontier point (digits-logit, sqdf, alpha_official 1, smoke budgets; runs on the CPU)",
    "",
    "```",
    table.read_text().strip() if table.is_file() else "(no frontier.csv: see frontier.log)",
    "```",
    "",
]
(out / "report.md").write_text("\n".join(lines))
print("\n".join(lines))
EOF
failed=$(awk -F'\t' '$2 != 0' "$STEPS" | wc -l)
log "report: $REPORT ($failed step(s) failed, $((SECONDS - START)) s)"
[ "$failed" -eq 0 ]
