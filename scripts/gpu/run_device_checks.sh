#!/usr/bin/env bash
# The GPU benchmarks of issues 13 and 14 on a lent device machine, in one call of at most 10 minutes (docs/gpu.md):
#
#   bash scripts/gpu/run_device_checks.sh [all|engine|train]
#
# Needs .gpu-carry/ carried (scripts/gpu/prepare_carry.py writes it: pydantic wheels, an fp16 all-MiniLM-L6-v2, the
# shared data split and the CPU baselines). Installs the wheels into a folder of its own (the image is not changed),
# then runs scripts/bench_gpu_engine.py and scripts/bench_gpu_train.py under time budgets and hard timeouts, and
# leaves under $OUT (default runs/gpu): env.txt, nvidia-smi.txt, engine.log / engine.json, train.log / train.json,
# BENCHMARKS.md (a copy with both blocks rewritten) and gpu-blocks.md (the two blocks alone).
set -uo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
case "$what" in all|engine|train) ;; *) echo "usage: $0 [all|engine|train]" >&2; exit 2 ;; esac
carry=${CARRY:-.gpu-carry}
out=${OUT:-runs/gpu}
py=${PYTHON:-python3}
# seconds: each script stops its phases at its budget; the timeout (SIGTERM, then SIGKILL 10 s later) is the backstop
engine_budget=${ENGINE_BUDGET:-200}; engine_timeout=${ENGINE_TIMEOUT:-225}
train_budget=${TRAIN_BUDGET:-285}; train_timeout=${TRAIN_TIMEOUT:-315}
# EXTRA_ARGS=--tiny (with PYTHON=.venv/bin/python and a small CARRY) tries this script on a CPU
read -r -a extra <<<"${EXTRA_ARGS:-}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)

if ! "$py" -c "import pydantic" 2>/dev/null; then
  ls "$carry"/wheels/*.whl >/dev/null 2>&1 || { echo "no wheels in $carry/wheels: run scripts/gpu/prepare_carry.py and carry $carry" >&2; exit 3; }
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/arenapref-site "$carry"/wheels/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 3; }
  export PYTHONPATH=/tmp/arenapref-site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}

"$py" - >"$out/env.txt" 2>&1 <<'EOF' || { cat "$out/env.txt"; exit 3; }
import importlib, platform
import torch, transformers, peft, accelerate, pydantic
import arenapref.estimate, arenapref.models.merge, arenapref.models.transformer, arenapref.train.trainer  # what the scripts import
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "transformers",
      transformers.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__, "pydantic", pydantic.__version__)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
print("nproc", __import__("os").cpu_count())
for name in ("bitsandbytes", "lightgbm", "flash_attn"):
    try:
        importlib.import_module(name)
        print(name, "importable")
    except Exception as e:
        print(name, "not importable:", type(e).__name__, e)
EOF
cat "$out/env.txt"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
cp BENCHMARKS.md "$out/BENCHMARKS.md"

status=0
if [ "$what" != train ]; then
  timeout -s TERM -k 10 "$engine_timeout" "$py" scripts/bench_gpu_engine.py --budget-s "$engine_budget" \
    --benchmarks "$out/BENCHMARKS.md" --json "$out/engine.json" ${extra[@]+"${extra[@]}"} 2>&1 | tee "$out/engine.log"
  rc=${PIPESTATUS[0]}; echo "bench_gpu_engine.py exit $rc"; [ "$rc" = 0 ] || status=1
fi
if [ "$what" != engine ]; then
  timeout -s TERM -k 10 "$train_timeout" "$py" scripts/bench_gpu_train.py --budget-s "$train_budget" \
    --minilm-path "$carry/minilm" --data "$carry/data" --benchmarks "$out/BENCHMARKS.md" --json "$out/train.json" \
    ${extra[@]+"${extra[@]}"} 2>&1 | tee "$out/train.log"
  rc=${PIPESTATUS[0]}; echo "bench_gpu_train.py exit $rc"; [ "$rc" = 0 ] || status=1
fi
sed -n -e '/<!-- gpu-engine:start -->/,/<!-- gpu-engine:end -->/p' -e '/<!-- gpu-train:start -->/,/<!-- gpu-train:end -->/p' \
  "$out/BENCHMARKS.md" >"$out/gpu-blocks.md"
echo "run_device_checks.sh $what: $(( $(date +%s) - start )) s, exit $status; blocks in $out/gpu-blocks.md"
exit $status
