"""Builds the cffi extension `ikepriv.ext._dh`; everything else is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["ikepriv/ext/build_dh.py:ffibuilder"])
