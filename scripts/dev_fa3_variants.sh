#!/usr/bin/env bash
# A short device call: the variant tests on fa3 only (soft-cap + window and
# ALiBi newly served by the Hopper kernels, custom masks after the
# instantiation change), then the Python tests that reach them through
# "auto". Logs under $OUT. Set TESSERA_COMMIT.
export TESSERA_COMMIT=27d5045
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$PWD/.gpu-build/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT"
TESSERA_TEST_PREFILL_BACKENDS=fa3 timeout 80 .gpu-build/bin/tessera_gpu_tests \
  --gtest_filter='SinglePrefill.SoftCapWithSlidingWindow*:SinglePrefill.Alibi*:SinglePrefill.PositionalVariants*:SinglePrefill.HopperBackend*:SinglePrefill.CustomMask*:BatchPrefill.VariantsMatchReference:BatchPrefill.CustomMasks*' \
  > "$OUT/variants_fa3.log" 2>&1
echo "variants fa3 rc $?" >> "$OUT/variants_fa3.log"
grep -E '^\[  FAILED|^\[       OK|PASSED|rc |Failure|error' "$OUT/variants_fa3.log" | head -40
TESSERA_LIBRARY="$PWD/.gpu-build/lib/libtessera.so" PYTHONPATH=python timeout 70 \
  python3 -m pytest tests/python -q -p no:cacheprovider -k "alibi or soft_cap or window or backend" \
  > "$OUT/pytest_variants.log" 2>&1
echo "pytest rc $?" >> "$OUT/pytest_variants.log"
tail -5 "$OUT/pytest_variants.log"
