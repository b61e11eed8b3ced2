# Shared by the scripts: locate nvcc and pick the build directory.
export PATH="$PATH:/usr/local/cuda/bin"
TESSERA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESSERA_BUILD_DIR="${TESSERA_BUILD_DIR:-$TESSERA_ROOT/build}"
TESSERA_JOBS="${TESSERA_JOBS:-$(nproc)}"

# Configures (once) and builds the given targets, or everything.
tessera_build() {
  if [[ ! -f "$TESSERA_BUILD_DIR/build.ninja" ]]; then
    cmake -S "$TESSERA_ROOT" -B "$TESSERA_BUILD_DIR" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release ${TESSERA_CMAKE_ARGS:-}
  fi
  cmake --build "$TESSERA_BUILD_DIR" -j "$TESSERA_JOBS" ${1:+--target "$@"}
}
