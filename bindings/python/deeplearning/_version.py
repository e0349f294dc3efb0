"""The package version; it must equal the shared library's DL_VERSION_STRING."""

__version__ = "0.1.0"
