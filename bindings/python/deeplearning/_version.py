"""The package version, which is also the wheel's (pyproject.toml).

Its one source is the DL_VERSION_* macros of Include/deeplearning.h; an installed
package has no header to read, so this copies them. The loader refuses a library of
another version, and the ctest install_versions and scripts/test_wheel.sh compare it
with the header.
"""

__version__ = "0.1.0"
