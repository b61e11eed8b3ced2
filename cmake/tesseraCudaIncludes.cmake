# CUDA 13 moved libcu++ (<cuda/std/...>) from the toolkit's include directory
# to include/cccl. nvcc adds that directory by itself, a host compiler does
# not, and Tessera's public headers that are shared by host and device code
# (attention/variant_params.h, decode_schedule.cuh) include <cuda/std/...>.
# Used by the build (CMakeLists.txt) and by the installed package
# (tesseraConfig.cmake), which must look on the consumer's machine, not the
# one the library was built on. Needs find_package(CUDAToolkit) first.
function(tessera_cccl_include_dirs out_var)
  set(dirs)
  foreach(cuda_include IN LISTS CUDAToolkit_INCLUDE_DIRS)
    if(EXISTS "${cuda_include}/cccl/cuda/std")
      list(APPEND dirs "${cuda_include}/cccl")
    endif()
  endforeach()
  set(${out_var} ${dirs} PARENT_SCOPE)
endfunction()
