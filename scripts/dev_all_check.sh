#!/usr/bin/env bash
# The device calls of docs/STATUS.md "Next 0" for a staged build
# (.gpu-variants/NAME.tar.xz, scripts/stage_gpu_variant.sh NAME). From the
# repository root, carry [".gpu-variants/NAME.tar.xz"]:
#   DEV_BUILD=NAME MODE=tests bash scripts/dev_all_check.sh  # pytest + gtests of the new features
#   DEV_BUILD=NAME MODE=bench bash scripts/dev_all_check.sh  # their bench rows + PyTorch peers
# DEV_EXTRA_SPECS: more scripts/dev_fa3_check.sh specs in the same call.
# pytest runs the build's own python/ and tests/python (staged with it).
# DEV_BUILD (default all) names the build that pytest and the gtests use.
build=${DEV_BUILD:-all}
d=/tmp/dev_builds/$build
mkdir -p $d
python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
  .gpu-variants/$build.tar.xz | tar x -C $d
cat $d/COMMIT
nvcc_dir="$(dirname "$(readlink -f "$(command -v nvcc)")")"
gtests='*Mla.*:Cascade.*:*SegmentGemm*:*BmmFp8*:*Sampling*:*Qk192*'
if [[ ${MODE:-tests} == tests ]]; then
  files=${PYTEST_FILES:-"test_mla.py test_cascade.py test_gemm.py test_sampling.py
    test_transformers_integration.py test_flat.py"}
  cuda_include="$nvcc_dir/../include"
  (cd $d && LD_LIBRARY_PATH="$d/lib:$nvcc_dir/../lib64" TESSERA_LIBRARY=$d/lib/libtessera.so \
    TESSERA_JIT_INCLUDE_PATH="$d/include:$cuda_include:$cuda_include/cccl" \
    PYTHONPATH=python timeout "${DEV_PYTEST_S:-200}" python3 -m pytest \
    $(printf 'tests/python/%s ' $files) -q -p no:cacheprovider -rf --timeout 60 \
    > "$OUT/pytest.log" 2>&1)
  echo "pytest rc $?"; tail -25 "$OUT/pytest.log"
  extra=${DEV_EXTRA_SPECS:-}
  bash scripts/dev_fa3_check.sh "$build@${DEV_GTESTS:-$gtests}@none@${DEV_GTEST_S:-240}@fa2,fa3 $extra" "${DEV_BUDGET:-360}"
else
  extra=${DEV_EXTRA_SPECS:-}
  specs="$build@none@dtype=bf16@@@mla $build@none@prefix=@@@cascade"
  specs+=" $build@none@kind=@@@segment_gemm $build@none@b=@@@bmm_fp8 $build@none@B=@@@sampling $extra"
  DEV_PEERS=1 bash scripts/dev_fa3_check.sh "$specs" "${DEV_BUDGET:-540}"
fi
