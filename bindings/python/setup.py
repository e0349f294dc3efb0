"""Build hook of the Python package; pyproject.toml holds everything else.

A plain `pip install bindings/python` builds a pure-Python wheel: the package finds
the library in the source tree's build folders or through DEEPLEARNING_LIBRARY (see
deeplearning/_lib.py). scripts/wheel.sh first copies libdeeplearning.so into the
package folder; the wheel then carries native code, so it is tagged for this platform
(and auditwheel can repair it to a manylinux tag). It stays py3-none: the package is
ctypes and NumPy, with no extension module tied to one Python version or ABI.
"""

from pathlib import Path

from setuptools import Distribution, setup

BUNDLED_LIBRARY = Path(__file__).resolve().parent / "deeplearning" / "libdeeplearning.so"


class NativeDistribution(Distribution):
    """Holds native code: its files go to platlib and its wheel is not pure."""

    def has_ext_modules(self):
        return True


def native_wheel_options() -> dict:
    """setup() arguments for a py3-none-<platform> wheel: for this platform, but not
    for this interpreter's version and ABI."""
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:  # setuptools older than 70.1 keeps it in the wheel package
        from wheel.bdist_wheel import bdist_wheel

    class Py3Wheel(bdist_wheel):
        def get_tag(self):
            return "py3", "none", super().get_tag()[2]

    return {"distclass": NativeDistribution, "cmdclass": {"bdist_wheel": Py3Wheel}}


setup(**(native_wheel_options() if BUNDLED_LIBRARY.is_file() else {}))
