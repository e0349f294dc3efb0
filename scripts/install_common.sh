# Shared by scripts/setup.sh and scripts/bench_setup.sh (sourced, not run): installing
# what is missing from Debian and PyPI, as root or through sudo. Messages start with
# "$install_name: ".

install_name=${install_name:-setup}
python=${PYTHON:-python3}
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

apt_install() {
    echo "$install_name: apt-get install $*"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

# Installs those of the Debian packages given that are not installed yet.
apt_install_missing() {
    local package missing=()
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# pip install "$@" into $python, with pip itself installed first if it is missing.
pip_install() {
    if ! command -v "$python" > /dev/null; then
        apt_install python3 python3-pip
    fi
    if ! "$python" -m pip --version > /dev/null 2>&1; then
        apt_install python3-pip
    fi
    local flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
    # Debian's own python3 refuses pip installs (PEP 668) unless told.
    if "$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
        flags+=(--break-system-packages)
    fi
    "$python" -m pip install "${flags[@]}" "$@"
}
