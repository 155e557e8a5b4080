#!/usr/bin/env bash
# effbench's GPU check: the CUDA tests, then seconds per example of every explainer and metric with
# --device cuda on the four core tasks (64 test examples each), and the efficient-attention solver's time on
# the CPU and on the GPU. Writes $OUT/gpu_check.json (figures), $OUT/tests.log, $OUT/runs.log, $OUT/gpu_check.log.
#
# The GPU machine reaches no package index and holds no effbench cache, so it runs in two steps:
#
#   1. here, where the four tasks' data and reference models are cached (effbench train --task T):
#        scripts/gpu_check.sh --prepare
#      stages into ./gpu_carry/ (git-ignored, about 30 MB): each task's parsed examples, each reference
#      model's config and tokenizer (not its weights: 87 MB each, more than may travel), and wheels of
#      what the machine's image lacks (transformers at this machine's version, datasets, dill, multiprocess;
#      it has torch with CUDA).
#   2. there, from the repository root, with gpu_carry/ carried along (at most 10 minutes on one H200):
#        OUT=$OUT scripts/gpu_check.sh
#      With no reference model cached there, each task runs on a stand-in: a MiniLM with the reference
#      model's config and tokenizer and seeded random weights. The timing reflects the model's shapes and the
#      task's input lengths; what depends on the predictions (the minimal-condition searches, the simplex's
#      pivots) may differ from the reference model's. The JSON says which model each task ran.
#
# Settings (environment): DEVICE (cuda), LIMIT (64), BUDGET (seconds for the whole check, 540), PYTHON
# (python3), CARRY (gpu_carry), OUT (./gpu_check_out). A dry run on a CPU: DEVICE=cpu LIMIT=2 scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
CARRY=$(realpath -m "${CARRY:-gpu_carry}")
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

if [ "${1:-}" = "--prepare" ]; then
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    mkdir -p "$CARRY/wheels"
    "$PY" scripts/gpu_check.py prepare --carry "$CARRY" || exit 1
    # pure-Python wheels, but pip picks multiprocess's by Python version: the GPU machine's python3 is 3.12
    # shellcheck disable=SC2046
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$CARRY/wheels" $("$PY" scripts/gpu_check.py wheels) || exit 1
    du -sh "$CARRY"
    echo "gpu_check: staged; on the GPU machine run from the repository root: OUT=\$OUT scripts/gpu_check.sh" \
         "(carry: $CARRY)"
    exit 0
fi

DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-64}
BUDGET=${BUDGET:-540}
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
deadline=$((started + BUDGET))
log() { echo "gpu_check: $*" | tee -a "$OUT/gpu_check.log" >&2; }

# torch: the machine's own where it sees the device; else the pinned CUDA wheel, where an index is reachable
if ! "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null; then
    log "no torch that sees $DEVICE: installing torch==2.13.0"
    "$PY" -m pip install -q torch==2.13.0 || { log "could not install torch"; exit 1; }
fi
# effbench runs from this tree; what it needs beyond the image comes from the carried wheels
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    site=${TMPDIR:-/tmp}/effbench-gpu-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$CARRY"/wheels/*.whl || { log "could not install the carried wheels"; exit 1; }
    export PYTHONPATH=$site:$PYTHONPATH
fi
if ! "$PY" -c "import effbench.cli, transformers, scipy, sklearn, tabulate, yaml, filelock, tqdm, safetensors, pytest" 2>>"$OUT/gpu_check.log"; then
    log "effbench's requirements are missing: pip install -e .[dev]"
    "$PY" -m pip install -q -e '.[dev]' || { log "could not install effbench's requirements"; exit 1; }
fi
"$PY" -c "import datasets" 2>>"$OUT/gpu_check.log" || log "datasets does not import: the toy-task CUDA tests will fail (see above)"
if [ -d "$CARRY/cache" ]; then
    export EFFBENCH_CACHE=$CARRY/cache
fi
log "python $("$PY" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)')"

# the CUDA tests (only these: the other tests need what this machine lacks, the packaged encoder among them)
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -m '' -k cuda tests/test_device.py tests/test_out_of_memory.py \
    >"$OUT/tests.log" 2>&1
tests_rc=$?
log "CUDA tests: exit code $tests_rc: $(tail -n 1 "$OUT/tests.log")"

"$PY" scripts/gpu_check.py measure --carry "$CARRY" --out "$OUT" --device "$DEVICE" --limit "$LIMIT" \
    --deadline "$deadline" --tests-rc "$tests_rc" --tests-log "$OUT/tests.log" 2>>"$OUT/gpu_check.log"
measure_rc=$?
log "measured in $(( $(date +%s) - started )) s (exit code $measure_rc): $OUT/gpu_check.json"
exit $(( tests_rc != 0 || measure_rc != 0 ))
