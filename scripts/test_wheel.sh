#!/usr/bin/env bash
# Installs the wheel of scripts/wheel.sh where the libraries it was built against are
# not there, and checks that `import deeplearning` trains, saves and loads:
#   bash scripts/test_wheel.sh [WHEEL]       WHEEL defaults to dist/deeplearning-*.whl
#
# The place is a minimal Debian 12 (debootstrap --variant=minbase, plus python3 and
# python3-venv): glibc, libstdc++, libgcc_s and zlib (the libraries the manylinux
# policy lets a wheel expect), no json-c, HDF5, OpenBLAS, Fortran runtime, Swift or
# -dev package. It is made once (a few minutes) and kept in DL_WHEEL_ROOT (default
# ~/.cache/deeplearning/debian-12-python); each run creates a fresh virtual
# environment in it, with an empty environment (no DEEPLEARNING_LIBRARY), installs the
# wheel and NumPy from PyPI (pip's download cache stays in the root), runs
# scripts/wheel_check.py there, and removes the environment. It needs root (or sudo)
# for debootstrap and chroot.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=${DL_WHEEL_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/deeplearning/debian-12-python}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

if [ $# -gt 0 ]; then
    wheel=$1
else
    wheels=(dist/deeplearning-*.whl)
    [ -f "${wheels[0]}" ] || { echo "test_wheel: no dist/deeplearning-*.whl; run scripts/wheel.sh" >&2; exit 1; }
    wheel=${wheels[-1]}
fi
# The version the wheel must carry: the header's, the one source.
version=$(sed -n 's/^#define DL_VERSION_STRING "\(.*\)"$/\1/p' Include/deeplearning.h)
case $(basename "$wheel") in
    deeplearning-"$version"-py3-none-manylinux_*.whl) ;;
    *) echo "test_wheel: $wheel is not a manylinux wheel of version $version" >&2; exit 1 ;;
esac

# MARK: The minimal Debian, made once
mkdir -p "$(dirname "$root")"
(
    flock 9   # one maker at a time; the others wait and reuse it
    if [ ! -x "$root/usr/bin/python3" ]; then
        echo "test_wheel: making a minimal Debian 12 in $root (once)"
        $sudo rm -rf "$root.part"
        $sudo debootstrap --variant=minbase --include=python3,python3-venv \
            bookworm "$root.part" "$mirror" > "$root.log" 2>&1 ||
            { tail -20 "$root.log"; exit 1; }
        $sudo mv "$root.part" "$root"
    fi
) 9> "$root.lock"
# pip inside reaches PyPI with the host's name server and certificate authorities.
$sudo cp /etc/resolv.conf "$root/etc/resolv.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    $sudo mkdir -p "$root/etc/ssl/certs"
    $sudo cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi

# MARK: A fresh environment, the wheel, the check
work=$($sudo mktemp -d "$root/tmp/wheel-test.XXXXXX")
trap '$sudo rm -rf "$work"' EXIT
inside=/tmp/$(basename "$work")
$sudo cp "$wheel" scripts/wheel_check.py "$work/"
if $sudo unshare --mount true 2> /dev/null; then
    # A private mount namespace: /proc inside the root, unmounted when the run ends.
    enter=(unshare --mount --fork sh -c 'mount -t proc proc "$1/proc" && exec chroot "$@"' sh)
else
    enter=(chroot)   # where mounts are not allowed (containers): Python and the library run without /proc
fi
echo "test_wheel: $(basename "$wheel") in a fresh venv of $root"
$sudo env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${enter[@]}" \
    "$root" /bin/sh -euc '
        cd "$1"
        python3 -m venv venv
        venv/bin/python -m pip install --quiet --disable-pip-version-check ./*.whl
        venv/bin/python -m pip list --disable-pip-version-check --format=freeze
        venv/bin/python wheel_check.py "$2"
    ' sh "$inside" "$version"
