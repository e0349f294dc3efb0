# The library's version, read from its one source: the DL_VERSION_MAJOR,
# DL_VERSION_MINOR and DL_VERSION_PATCH macros of Include/deeplearning.h.
# Included before project(), which takes it as PROJECT_VERSION; the SONAME,
# deeplearning.pc and the CMake package's version file all follow from there.
#
# Two copies cannot be computed by a build step and are checked instead:
# Sources/DeepLearning/Version.swift (SwiftPM has no configure step; it feeds
# dl_version() and `dl --version`) and bindings/python/deeplearning/_version.py
# (an installed Python package has no header to read; it feeds __version__ and
# the wheel's version). cmake/test_install.sh and scripts/test_wheel.sh
# compare all of them with the header.
set(dl_header ${CMAKE_CURRENT_LIST_DIR}/../Include/deeplearning.h)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${dl_header})
file(STRINGS ${dl_header} dl_version_lines REGEX "^#define DL_VERSION_[A-Z]+ ")
foreach(part MAJOR MINOR PATCH)
  if(NOT dl_version_lines MATCHES "#define DL_VERSION_${part} ([0-9]+)")
    message(FATAL_ERROR "${dl_header} does not define DL_VERSION_${part} as a number")
  endif()
  set(dl_version_${part} ${CMAKE_MATCH_1})
endforeach()
set(DL_VERSION ${dl_version_MAJOR}.${dl_version_MINOR}.${dl_version_PATCH})
# DL_VERSION_STRING repeats the three numbers inside the header itself.
if(NOT dl_version_lines MATCHES "#define DL_VERSION_STRING \"${DL_VERSION}\"")
  message(FATAL_ERROR "${dl_header}: DL_VERSION_STRING is not \"${DL_VERSION}\" "
                      "(its DL_VERSION_MAJOR.MINOR.PATCH)")
endif()
