#!/usr/bin/env bash
# The ctests of `cmake --install` (CMakeLists.txt, "Tests"):
#   test_install.sh tree      BUILD PREFIX LIBDIR  installs BUILD into PREFIX (fixture
#                             dl_installed) and checks its layout
#   test_install.sh versions  PREFIX LIBDIR SOURCE every place the version shows agrees
#                             with Include/deeplearning.h, its one source
#   test_install.sh consumers PREFIX LIBDIR SOURCE GENERATOR
#                             a C program built with pkg-config and one built with
#                             find_package, against a copy of PREFIX alone; then the
#                             copy is moved and both are built and run again
# LIBDIR is CMAKE_INSTALL_LIBDIR (lib, or lib/<multiarch>); CC the C compiler (default cc).
set -euo pipefail

mode=$1
shift
python=${PYTHON:-python3}
cc=${CC:-cc}
# Only what the test passes counts, never the caller's search paths.
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH DEEPLEARNING_LIBRARY

fail() { echo "FAIL: $*"; exit 1; }

# preprocess PREFIX TEXT: TEXT with the macros of PREFIX/include/deeplearning.h expanded.
preprocess() {
    printf '#include <deeplearning.h>\n%s\n' "$2" | "$cc" -E -P -I"$1/include" -x c - | tail -n 1
}

# The version in the header under PREFIX/include: "MAJOR.MINOR.PATCH".
header_version() {
    preprocess "$1" "DL_VERSION_MAJOR DL_VERSION_MINOR DL_VERSION_PATCH" | tr -s ' ' '.'
}

case $mode in
tree)
    build=$1 prefix=$2 libdir=$3
    rm -rf "$prefix"
    cmake --install "$build" --prefix "$prefix" > /dev/null
    echo "installed files:"
    (cd "$prefix" && find . -type f -printf '  %P\n' -o -type l -printf '  %P -> %l\n' | sort)

    version=$(header_version "$prefix")
    major=${version%%.*}
    lib=$prefix/$libdir/libdeeplearning.so
    [ -f "$lib.$version" ] && [ ! -L "$lib.$version" ] || fail "no $lib.$version"
    [ "$(readlink "$lib.$major")" = "libdeeplearning.so.$version" ] || fail "$lib.$major is not a link to .so.$version"
    [ "$(readlink "$lib")" = "libdeeplearning.so.$major" ] || fail "$lib is not a link to .so.$major"
    soname=$(readelf -d "$lib.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "libdeeplearning.so.$major" ] || fail "SONAME is '$soname', not libdeeplearning.so.$major"
    for file in include/deeplearning.h "$libdir/pkgconfig/deeplearning.pc" bin/dl \
                "$libdir/cmake/deeplearning/deeplearningConfig.cmake" \
                "$libdir/cmake/deeplearning/deeplearningConfigVersion.cmake" \
                "$libdir/cmake/deeplearning/deeplearningTargets.cmake" \
                share/deeplearning/specs/mnist_mlp.json share/deeplearning/docs/README.md; do
        [ -f "$prefix/$file" ] || fail "$file is not installed"
    done
    # A moved tree still works only if nothing in it names where it was made or put.
    for elf in "$lib.$version" "$prefix/bin/dl"; do
        if readelf -d "$elf" | grep -E '\((RPATH|RUNPATH)\)'; then
            fail "$elf keeps an RPATH"
        fi
    done
    if grep -rlF -e "$prefix" -e "$build" "$prefix/$libdir/pkgconfig" "$prefix/$libdir/cmake"; then
        fail "the files above name the build or install folder"
    fi
    echo "ok: SONAME $soname, links, pkg-config and CMake files, dl, specs and docs; no RPATH, no absolute path"
    ;;

versions)
    prefix=$1 libdir=$2 source=$3
    cmp -s "$prefix/include/deeplearning.h" "$source/Include/deeplearning.h" ||
        fail "the installed header differs from $source/Include/deeplearning.h"
    header=$(header_version "$prefix")
    IFS=. read -r major minor patch <<< "$header"
    number=$((major * 10000 + minor * 100 + patch))
    lib=$prefix/$libdir/libdeeplearning.so
    status=0
    # agree WHAT FOUND EXPECTED
    agree() {
        if [ "$2" = "$3" ]; then
            printf '  %-36s %s\n' "$1" "$2"
        else
            printf '  %-36s %s  FAIL: expected %s\n' "$1" "$2" "$3"
            status=1
        fi
    }
    library_version='import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.dl_version.restype = ctypes.c_char_p
print(lib.dl_version().decode(), lib.dl_version_number())'
    python_version='import runpy, sys
print(runpy.run_path(sys.argv[1])["__version__"])'
    config_version=$(mktemp --suffix=.cmake)
    trap 'rm -f "$config_version"' EXIT
    printf 'include(%s)\nmessage("${PACKAGE_VERSION}")\n' \
        "$prefix/$libdir/cmake/deeplearning/deeplearningConfigVersion.cmake" > "$config_version"

    echo "the source, DL_VERSION_MAJOR.MINOR.PATCH of deeplearning.h: $header"
    agree "DL_VERSION_STRING" "$(preprocess "$prefix" DL_VERSION_STRING | tr -d '"')" "$header"
    agree "DL_VERSION_NUMBER" "$(($(preprocess "$prefix" DL_VERSION_NUMBER)))" "$number"
    agree "dl_version() dl_version_number()" "$("$python" -c "$library_version" "$lib")" "$header $number"
    agree "dl --version" "$("$prefix/bin/dl" --version)" "$header"
    agree "pkg-config --modversion" \
        "$(PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --modversion deeplearning)" "$header"
    agree "CMake package (ConfigVersion)" "$(cmake -P "$config_version" 2>&1)" "$header"
    agree "Python __version__ (_version.py)" \
        "$("$python" -c "$python_version" "$source/bindings/python/deeplearning/_version.py")" "$header"
    [ "$status" -eq 0 ] && echo "ok: every version is $header"
    exit "$status"
    ;;

consumers)
    prefix=$1 libdir=$2 source=$3 generator=$4
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -a "$prefix" "$work/prefix"
    mkdir "$work/app"
    cp "$source/bindings/c/example.c" "$work/app/app.c"
    cp "$source/cmake/consumer/CMakeLists.txt" "$work/app/"

    # build_and_run PREFIX: both consumers from scratch against PREFIX alone.
    build_and_run() {
        local prefix=$1 spec=$1/share/deeplearning/specs/mnist_mlp.json flags
        rm -rf "$work/app/app-pc" "$work/app/build"
        echo "== pkg-config, $prefix"
        flags=$(PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --cflags --libs deeplearning)
        case $flags in *"$source"*) fail "pkg-config points into the source tree: $flags" ;; esac
        (cd "$work/app" && set -x && "$cc" app.c $flags -o app-pc)
        LD_LIBRARY_PATH=$prefix/$libdir "$work/app/app-pc" "$spec"

        echo "== find_package, $prefix"
        CC=$cc cmake -S "$work/app" -B "$work/app/build" -G "$generator" \
            -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF \
            -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
            | tee "$work/configure.log"
        grep -qF "from $prefix/$libdir/cmake/deeplearning" "$work/configure.log" ||
            fail "find_package did not take the package in $prefix"
        cmake --build "$work/app/build"
        "$work/app/build/app" "$spec"
        "$prefix/bin/dl" --version > /dev/null
    }

    build_and_run "$work/prefix"
    mv "$work/prefix" "$work/moved"
    build_and_run "$work/moved"
    echo "ok: pkg-config and find_package consumers built and ran, before and after moving the prefix"
    ;;

*)
    echo "usage: test_install.sh tree|versions|consumers ARGS (see the comments)" >&2
    exit 2
    ;;
esac
