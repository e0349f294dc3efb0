# ArgumentParser from swift-argument-parser, as a static library target
# `ArgumentParser`, for the `dl` command (Sources/dl).
#
# Fetched and built as SwiftNumerics.cmake does RealModule (see there why not
# through the project's own CMakeLists.txt). Package.swift depends on
# https://github.com/apple/swift-argument-parser from 1.8.2; keep
# DL_SWIFT_ARGUMENT_PARSER_TAG in step with it. To use a checkout you already
# have, pass -DFETCHCONTENT_SOURCE_DIR_SWIFT_ARGUMENT_PARSER=/path/to/it.
include(FetchContent)

set(DL_SWIFT_ARGUMENT_PARSER_TAG 1.8.2 CACHE STRING "swift-argument-parser release to build ArgumentParser from")

FetchContent_Declare(swift_argument_parser
  GIT_REPOSITORY https://github.com/apple/swift-argument-parser
  GIT_TAG        ${DL_SWIFT_ARGUMENT_PARSER_TAG}
  SOURCE_SUBDIR  no-cmake-project)
FetchContent_MakeAvailable(swift_argument_parser)

# ArgumentParser imports ArgumentParserToolInfo (the JSON description of a
# command's options); both are plain Swift modules.
foreach(module ArgumentParserToolInfo ArgumentParser)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS
    ${swift_argument_parser_SOURCE_DIR}/Sources/${module}/*.swift)
  add_library(${module} STATIC ${sources})
  target_include_directories(${module} PUBLIC ${CMAKE_Swift_MODULE_DIRECTORY})
endforeach()
target_link_libraries(ArgumentParser PUBLIC ArgumentParserToolInfo)
