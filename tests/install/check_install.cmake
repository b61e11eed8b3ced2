# Installs the built tree into a scratch prefix and builds a small consumer
# against it with find_package(tessera) — proves the exported package config.
set(prefix ${BUILD_DIR}/install-check/prefix)
set(consumer_build ${BUILD_DIR}/install-check/consumer)
file(REMOVE_RECURSE ${BUILD_DIR}/install-check)

execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer
                        -B ${consumer_build} -DCMAKE_PREFIX_PATH=${prefix}
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
