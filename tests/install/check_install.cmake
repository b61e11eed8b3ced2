# Installs the built tree into a scratch prefix, builds a consumer against it
# with find_package(tessera) (every installed header, from the installed
# tree), and runs it: the API, then the JIT of the installed library with the
# paths compiled into it switched off (TESSERA_JIT_IGNORE_BUILTIN_PATHS), so
# that it must find Tessera's headers beside itself and the CUDA headers where
# the environment says, and must name the missing header when they are not
# there. Arguments: SOURCE_DIR, BUILD_DIR, CUDA_ARCHS, CUDA_INCLUDE_DIRS.
set(scratch ${BUILD_DIR}/install-check)
set(prefix ${scratch}/prefix)
set(consumer_build ${scratch}/consumer)
file(REMOVE_RECURSE ${scratch})

execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer
                        -B ${consumer_build} -G Ninja -DCMAKE_PREFIX_PATH=${prefix}
                        "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer with find_package(tessera) failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer_build} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
execute_process(COMMAND ${consumer_build}/tessera_consumer RESULT_VARIABLE rc
                OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "tessera 0\\.1\\.0: argument check ok")
  message(FATAL_ERROR "the consumer did not run as expected (${rc}): ${out}")
endif()
message(STATUS "installed package works: ${out}")

# A CUDA_HOME made of links to this toolkit's include directories, and an
# empty one. Everything else that could point the JIT at headers is unset.
file(MAKE_DIRECTORY ${scratch}/cuda_home/include ${scratch}/empty_cuda_home)
foreach(dir IN LISTS CUDA_INCLUDE_DIRS)
  file(GLOB entries RELATIVE ${dir} ${dir}/*)
  foreach(entry IN LISTS entries)
    file(CREATE_LINK ${dir}/${entry} ${scratch}/cuda_home/include/${entry} SYMBOLIC)
  endforeach()
endforeach()
set(jit_env ${CMAKE_COMMAND} -E env --unset=CUDA_PATH --unset=TESSERA_JIT_INCLUDE_PATH
            --unset=TESSERA_JIT_CUDA_INCLUDE_PATH TESSERA_JIT_IGNORE_BUILTIN_PATHS=1
            TESSERA_CACHE_DIR=${scratch}/jit-cache)

execute_process(COMMAND ${jit_env} CUDA_HOME=${scratch}/cuda_home
                        ${consumer_build}/tessera_consumer jit
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "jit ok")
  message(FATAL_ERROR "the installed JIT did not compile with CUDA_HOME set (${rc}): ${out}")
endif()
message(STATUS "installed JIT works: ${out}")

execute_process(COMMAND ${jit_env} CUDA_HOME=${scratch}/empty_cuda_home
                        ${consumer_build}/tessera_consumer jit
                RESULT_VARIABLE rc OUTPUT_VARIABLE out)
# Which CUDA header is named depends on which the generated source reaches
# first; the directories searched must be exactly the prefix's.
string(FIND "${out}" "was not found; searched, in order: ${prefix}/include." searched)
string(FIND "${out}" "jit failed: tessera: jit: header <cuda" named)
if(rc EQUAL 0 OR searched EQUAL -1 OR named EQUAL -1)
  message(FATAL_ERROR "without CUDA headers the installed JIT did not name the missing header "
                      "and the directories searched (${rc}): ${out}")
endif()
message(STATUS "installed JIT without CUDA headers: ${out}")
