#!/usr/bin/env bash
# The accelerator check: one prepared script, at most 8 minutes on one H100/H200.
#
#     bash benchmarks/gpu_check.sh DIR            (GPU_CHECK_TINY=1: seconds-sized, to test it on CPU)
#
# Runs, each under its own time limit, and writes under DIR:
#   env.txt                   the device (nvidia-smi), python, jax/flax/optax/orbax/torch versions
#   tests.log                 the tests that matter on an accelerator (equivalences pinned to
#                             float32 'highest', the precision policies, the sweep axis)
#   bench_clients.{json,md}   ours vs per-client loops, PyTorch loop and torch.func.vmap on the
#                             same device, one big-batch model, matmul ceilings (fp32, bf16)
#   bench_precision.md        the main round's rate at precision default, highest and bf16
#   bench_sweep.{json,md}     R sweep members in one program vs one member (throughput)
#   main/                     the 5-round depth sweep (experiments/depth_divergence/configs/e1/depth.py, the main job until issue 14), timed (main_job.txt)
#   summary.md                each step's exit code and wall time
# It installs nothing from the internet: a package that is missing is named in one line (exit 2,
# nothing written); wheels placed in ./wheels (pip download on a networked machine) are installed
# from there. Exit 1 when any step failed, 0 when all passed.
set -uo pipefail
DIR=${1:?usage: bash benchmarks/gpu_check.sh DIR}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TINY=${GPU_CHECK_TINY:-0}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg
export FEDJAX_DEEP_COMPILE_CACHE="$DIR/jax_cache"

need="jax flax optax orbax.checkpoint ml_collections chex numpy sklearn matplotlib tqdm pytest"
missing_packages() {  # the modules of $need that python cannot import (a missing parent counts)
  $PY - "$need" <<'EOF' || echo "python ($PY) itself"
import importlib.util, sys
def absent(m):
    try:
        return importlib.util.find_spec(m) is None
    except Exception:  # a missing parent package (orbax for orbax.checkpoint)
        return True
print(" ".join(m for m in sys.argv[1].split() if absent(m)))
EOF
}
missing=$(missing_packages)
if [ -n "$missing" ] && [ -d wheels ]; then
  $PY -m pip install -q --no-index --find-links wheels $(ls wheels/*.whl) >/dev/null 2>&1
  missing=$(missing_packages)
fi
if [ -n "$missing" ]; then
  echo "gpu_check: missing python packages: $missing (put their wheels in ./wheels and rerun; nothing is fetched from the internet)" >&2
  exit 2
fi
mkdir -p "$DIR"
# mnist1d (that sweep's data) is optional here: without it the main job is skipped, said below.
has_mnist1d=$($PY -c "import importlib.util; print(int(importlib.util.find_spec('mnist1d') is not None))")

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for m in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "torch", "numpy"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "absent", type(e).__name__)
import jax
print("backend", jax.default_backend(), "devices", jax.devices())
EOF
} > "$DIR/env.txt" 2>&1

failed=0
echo "| step | exit | seconds |" > "$DIR/summary.md"
echo "|---|---|---|" >> "$DIR/summary.md"
step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "gpu_check: $name (limit ${limit}s)" >&2
  timeout "$limit" "$@"
  local rc=$?
  [ "$rc" = 0 ] || failed=1
  echo "| $name | $rc | $(( $(date +%s) - t0 )) |" >> "$DIR/summary.md"
  echo "gpu_check: $name exit $rc after $(( $(date +%s) - t0 )) s" >&2
}

if [ "$TINY" = 1 ]; then
  TESTS="tests/test_precision.py tests/test_round.py::test_round_equals_loop_over_clients_with_numpy_average"
  CLIENTS=(--clients 1,2 --models digits --repeats 1)
  SWEEP=(--tiny --jobs throughput)
  PREC=(--clients 2 --steps 1 --repeats 1 --tiny)
  MAIN=(--config.num_rounds=1 "--config.sweep=(('model.depth', (2,)), ('mode', ('fl',)), ('seed', (0, 1)))")
  LIMITS=(300 300 120 120 300)
else
  TESTS="tests/test_round.py tests/test_algorithms.py tests/test_precision.py tests/test_sweep_axis.py tests/test_execution.py"
  CLIENTS=(--clients 16,64 --models cifar,resnet18 --resnet18-clients 16,64 --repeats 5)
  SWEEP=(--jobs throughput --members 16 --rounds 10)
  PREC=(--clients 64 --steps 4 --repeats 5)
  MAIN=()
  LIMITS=(150 130 40 40 110)
fi

step tests "${LIMITS[0]}" $PY -m pytest -q -x -p no:cacheprovider $TESTS > "$DIR/tests.log" 2>&1
step bench_clients "${LIMITS[1]}" $PY benchmarks/bench_clients.py "${CLIENTS[@]}" --out "$DIR" > "$DIR/bench_clients.log" 2>&1
step bench_precision "${LIMITS[2]}" $PY benchmarks/bench_precision.py "${PREC[@]}" --out "$DIR" > "$DIR/bench_precision.log" 2>&1
step bench_sweep "${LIMITS[3]}" $PY benchmarks/bench_sweep.py "${SWEEP[@]}" --out "$DIR" > "$DIR/bench_sweep.log" 2>&1
if [ "$has_mnist1d" = 1 ]; then
  step main_job "${LIMITS[4]}" bash -c "/usr/bin/time -p $PY -m fedjax_deep.cli train --config experiments/depth_divergence/configs/e1/depth.py --workdir '$DIR/main' --no-progress ${MAIN[*]@Q} > '$DIR/main_job.txt' 2>&1"
else
  echo "| main_job | skipped: mnist1d not installed (put its wheel in ./wheels) | 0 |" >> "$DIR/summary.md"
fi
rm -rf "$DIR/jax_cache"
cat "$DIR/summary.md"
exit "$failed"  # 1 when any step failed (summary.md says which)
