#!/usr/bin/env bash
# The device check for a machine with one CUDA GPU (sized for one H200: at most 8 minutes, the sum of the
# phases' time limits). Run from the repository root:  OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Uses the machine's python3 (PYTHON=...) with its CUDA torch, and this checkout's package through
# PYTHONPATH: nothing is installed (GPU machines here have no network). Phases, each under its own time
# limit; a failing phase does not stop the others, and the script exits 1 at the end if any failed:
#   preflight   GPU name, imports, CUDA stream == CPU stream        (cuda-stream-check.json)
#   tests       pytest -m gpu                                        (in the log)
#   generator   benchmarks/generator.py                              (generator.json)
#   train_step  benchmarks/train_step.py: seed-style, eager, compiled (train_step.json)
#   run         two minutes of (3,45) training via the CLI, stopped by SIGTERM (run_3-45_metrics.jsonl)
# Also written to $OUT: gpu_check.log (everything printed) and summary.json (each phase's exit status and
# seconds, and the run's throughput, MFU and losses). Few files on purpose: a device run returns 8 at most.
# GPU_CHECK_DRY=1 runs every phase tiny on the CPU (tests only collected), to check the script itself.
set -uo pipefail
OUT="${OUT:-benchmarks/results/gpu-check}"
PYTHON="${PYTHON:-python3}"
RUN_DIR="${RUN_DIR:-/tmp/gpu-check-run}"  # checkpoints stay outside $OUT
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check.log") 2>&1

RUN_SET=(--set train.device=cuda --set train.batch_size=8192 --set train.log_every=100 --set eval.every=1000)
if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
    TESTS=(--collect-only -q) GENERATOR=(--quick --seconds 0.2) TRAIN_STEP=(--quick --seconds 0.2) RUN_SECONDS=20
    CUDA_CHECK=("$PYTHON" -c "import harmonic_forecast.train")
    RUN_SET=(--set train.device=cpu --set train.batch_size=64 --set model.hidden=16 --set model.encoder_width=16
        --set train.log_every=5 --set eval.every=20 --set eval.batch_size=256)
else
    TESTS=(-q) GENERATOR=(--seconds 0.5) TRAIN_STEP=(--seconds 1) RUN_SECONDS=120
    CUDA_CHECK=("$PYTHON" benchmarks/cuda_stream_check.py)
fi

failed=0
PHASES="$OUT/.phases.tsv"
: >"$PHASES"

phase() {  # phase NAME SECONDS COMMAND...: run COMMAND under a time limit; record its exit status and duration
    local name=$1 limit=$2 start=$SECONDS status
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@"
    status=$?
    echo "=== $name: exit $status after $((SECONDS - start))s"
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >>"$PHASES"
    [ "$status" -eq 0 ] || failed=1
}

timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 20 "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# The phase limits add up to 7 min 45 s (8 minutes with the two lines above). Compilation is most of each GPU
# phase (a fresh machine has no Inductor cache; the tests fill it for the benchmark and the run).
phase preflight 25 "${CUDA_CHECK[@]}"
cp benchmarks/results/cuda-stream-check.json "$OUT/" 2>/dev/null
phase tests 165 "$PYTHON" -m pytest -m gpu -p no:cacheprovider "${TESTS[@]}" tests
phase generator 35 "$PYTHON" benchmarks/generator.py "${GENERATOR[@]}" --output "$OUT/generator.json"
phase train_step 100 "$PYTHON" benchmarks/train_step.py "${TRAIN_STEP[@]}" --output "$OUT/train_step.json"
# (3,45) from the seed config for RUN_SECONDS, then SIGTERM: the trainer saves a checkpoint and exits 3 (success)
rm -rf "$RUN_DIR"
phase run $((RUN_SECONDS + 20)) bash -c '"$@"; status=$?; [ "$status" -eq 0 ] || [ "$status" -eq 3 ]' run \
    timeout --preserve-status -s TERM -k 15 "$RUN_SECONDS" "$PYTHON" -m harmonic_forecast train \
    --config configs/seed_45.toml --output-dir "$RUN_DIR" \
    --set 'stages=[{components = [3, 45], samples = 100_000_000_000}]' "${RUN_SET[@]}"
cp "$RUN_DIR/metrics.jsonl" "$OUT/run_3-45_metrics.jsonl" 2>/dev/null

"$PYTHON" - "$OUT" <<'EOF'
"""summary.json: each phase's exit status and seconds, and the training run's figures."""
import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
phases = {}
for line in (out / ".phases.tsv").read_text().splitlines():
    name, status, seconds = line.split("\t")
    phases[name] = {"exit": int(status), "seconds": int(seconds)}
summary = {"phases": phases}
metrics = out / "run_3-45_metrics.jsonl"
if metrics.exists():
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    steady = train[1:] or train  # the first window holds the compilation
    summary["run"] = {
        "steps": train[-1]["step"] if train else 0,
        "samples_per_s_median": statistics.median(r["samples_per_s"] for r in steady) if steady else None,
        "mfu_median": statistics.median(r["mfu"] for r in steady) if steady and steady[0]["mfu"] else None,
        "loss_first_last": [train[0]["loss"], train[-1]["loss"]] if train else None,
        "eval_mse": [r["mse"] for r in records if r["kind"] == "eval"],
    }
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
rm -f "$PHASES"
[ "$failed" -eq 0 ] && echo "gpu_check: all phases passed" || echo "gpu_check: some phase FAILED (see above)"
exit "$failed"
