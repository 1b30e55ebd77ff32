"""The package version, in a module of its own so that the library's modules can name it without
importing the package root (which would run its import-time checks from inside a submodule)."""

__version__ = "0.1.0"
