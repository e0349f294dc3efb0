# RealModule from swift-numerics, as a static library target `RealModule`.
#
# Package.swift depends on https://github.com/apple/swift-numerics from 1.1.1;
# keep DL_SWIFT_NUMERICS_TAG in step with it. FetchContent clones that URL
# itself, so the CMake build needs neither a prior `swift build` nor its
# .build/checkouts (git reads github.com from a local mirror on our machines;
# elsewhere it is the real GitHub). To use a checkout you already have, pass
# -DFETCHCONTENT_SOURCE_DIR_SWIFT_NUMERICS=/path/to/swift-numerics.
#
# Only the sources are fetched (SOURCE_SUBDIR names a folder without a
# CMakeLists.txt, so FetchContent does not add_subdirectory the project).
# swift-numerics' own CMakeLists.txt would also build ComplexModule and
# Numerics, include(CTest), and register install() and export() rules for all
# of them; we need RealModule alone, built as SwiftPM builds it: its .swift
# files, plus the header-only C module _NumericsShims (include/ holds its
# module.modulemap), plus libm.
include(FetchContent)

set(DL_SWIFT_NUMERICS_TAG 1.1.1 CACHE STRING "swift-numerics release to build RealModule from")

FetchContent_Declare(swift_numerics
  GIT_REPOSITORY https://github.com/apple/swift-numerics
  GIT_TAG        ${DL_SWIFT_NUMERICS_TAG}
  SOURCE_SUBDIR  no-cmake-project)
FetchContent_MakeAvailable(swift_numerics)

file(GLOB real_module_sources CONFIGURE_DEPENDS
  ${swift_numerics_SOURCE_DIR}/Sources/RealModule/*.swift)
add_library(RealModule STATIC ${real_module_sources})
target_include_directories(RealModule PUBLIC
  ${CMAKE_Swift_MODULE_DIRECTORY}
  ${swift_numerics_SOURCE_DIR}/Sources/_NumericsShims/include)
target_link_libraries(RealModule PUBLIC m)
# Upstream code, compiled in the language mode its own manifest declares (5).
set_target_properties(RealModule PROPERTIES Swift_LANGUAGE_VERSION 5)
