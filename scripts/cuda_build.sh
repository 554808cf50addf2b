#!/usr/bin/env bash
# Builds the CLI with `--features cuda` on a machine without a GPU or a CUDA installation, to
# carry to a GPU machine (scripts/gpu_check.sh). Debian has no CUDA toolkit, so the compiler
# and the libraries come from NVIDIA's PyPI wheels, all pinned to CUDA 13.0 (nvvm too, which
# nvcc's wheel would take at its newest) so the PTX is not newer than the lent machines'
# driver (580, CUDA 13.0). Usage:
#   bash scripts/cuda_build.sh [compute capability, default 90 (H100/H200)] [cargo args...]
# Writes target/release/continuo-cuda. The toolkit lives in target/cuda-toolkit (about 1 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --cuda
cap=${1:-90}
shift || true
kit=$PWD/target/cuda-toolkit
if ! grep -q "^nvidia-nvvm==13.0.88$" "$kit/installed" 2>/dev/null; then
  rm -rf "$kit"
  python3 -m venv "$kit/venv"
  "$kit/venv/bin/pip" install -q --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 \
    nvidia-cuda-nvrtc==13.0.88 nvidia-nvvm==13.0.88
  "$kit/venv/bin/pip" freeze > "$kit/installed"
fi
root=$(echo "$kit"/venv/lib/python3*/site-packages/nvidia/cu13)
# The wheels ship versioned libraries only; the linker looks for the unversioned names.
for lib in cublas cublasLt curand nvrtc cudart; do
  versioned=$(ls "$root/lib/lib$lib.so."* | grep -v alt | head -1)
  ln -sf "$(basename "$versioned")" "$root/lib/lib$lib.so"
done
# libcuda.so is the driver's, installed with it on the GPU machine. Linking here needs its
# names only, as the CUDA toolkit's own lib/stubs/libcuda.so provides them (no wheel carries
# that stub): one empty function per driver entry point cudarc declares, under the driver's
# soname, so the binary loads the real libcuda.so.1 at run time.
cudarc=$(cargo metadata --format-version 1 --features cuda 2>/dev/null |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
mkdir -p "$root/lib/stubs"
grep -ohE '^\s+(pub )?fn cu[A-Za-z0-9_]+\(' "$(dirname "$cudarc")/src/driver/sys/mod.rs" |
  sed -E 's/.*fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
  sed 's/.*/void &(void) {}/' > "$root/lib/stubs/libcuda.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/libcuda.c"
export CUDA_ROOT=$root CUDA_PATH=$root CUDA_HOME=$root PATH=$root/bin:$PATH
# No GPU is visible here: name the one the binary is for.
export CUDA_COMPUTE_CAP=$cap
# The build writes target/release/continuo: keep the CPU build's there.
cpu=target/release/continuo
[ -e "$cpu" ] && mv "$cpu" "$cpu-cpu"
status=0
cargo build --release --features cuda --bin continuo "$@" || status=$?
# (A CUDA binary of an earlier run may be the same file as cargo's fresh link: remove it first.)
[ $status -eq 0 ] && rm -f "$cpu-cuda" && mv "$cpu" "$cpu-cuda"
[ -e "$cpu-cpu" ] && mv "$cpu-cpu" "$cpu"
[ $status -eq 0 ] || exit $status
# ldd's whole output first: `ldd | grep -q` under pipefail fails when grep stops reading at the
# match (line 2) while ldd still writes (SIGPIPE), as it did once in CI.
deps=$(ldd "$cpu-cuda")
grep -q 'libcuda.so.1' <<<"$deps" || { echo "$cpu-cuda does not load libcuda" >&2; exit 1; }
echo "target/release/continuo-cuda: CUDA 13.0, compute capability $cap; on the GPU machine it"
echo "needs the driver's libcuda.so.1 and, on LD_LIBRARY_PATH, the CUDA 13 libraries of $root/lib"
