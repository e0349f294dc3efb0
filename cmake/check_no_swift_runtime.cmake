# ctest no_swift_runtime_dependency:
#   cmake -DLIBRARY=path/to/libdeeplearning.so -P check_no_swift_runtime.cmake
# Fails if the library needs any libswift*.so at run time: it must carry the
# Swift runtime inside (linked with -static-stdlib) so that C and Python
# programs load it on machines without a Swift toolchain.
if(NOT LIBRARY OR NOT EXISTS "${LIBRARY}")
  message(FATAL_ERROR "LIBRARY='${LIBRARY}' does not exist")
endif()
execute_process(COMMAND ldd "${LIBRARY}"
  OUTPUT_VARIABLE deps ERROR_VARIABLE deps RESULT_VARIABLE rc)
message("${deps}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ldd ${LIBRARY} failed (${rc})")
endif()
if(deps MATCHES "libswift")
  message(FATAL_ERROR "${LIBRARY} depends on the Swift runtime; link it with -static-stdlib")
endif()
message("ok: no libswift* dependency")
