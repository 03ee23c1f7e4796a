"""The test references (SigPy, fastMRI, Triton): imported so that an incomplete install is visible.

A reference that is not installed skips its tests with the install step that provides it, or fails
them under ``MBDLFAST_REQUIRE_REFERENCES=1`` (set by ``make test``, so CI cannot pass without them).
A reference that is installed but does not import (a missing dependency of its own) always fails,
with the import error: that is a broken environment, not an optional extra.
"""
import importlib
import importlib.util
import os

import pytest

INSTALL_HINT = "make install (or pip install -e '.[test]' and pip install --no-deps fastmri==0.3.0)"


def reference_module(name: str):
    """The module ``name`` of a reference library, or a skip / failure naming what is wrong."""
    package = name.split(".")[0]
    if importlib.util.find_spec(package) is None:
        message = f"the test reference {package!r} is not installed; install it with {INSTALL_HINT}"
        if os.environ.get("MBDLFAST_REQUIRE_REFERENCES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    try:
        return importlib.import_module(name)
    except ImportError as err:
        pytest.fail(f"the test reference {package!r} is installed but {name} does not import: {err} "
                    "(a dependency of it is missing; the test extra should declare it)", pytrace=False)
