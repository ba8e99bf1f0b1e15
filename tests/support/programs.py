"""Programs some tests run (pgbouncer, nginx): found, or the test fails under CI and is skipped
elsewhere, saying how to install it."""

import os
import shutil

import pytest

# Debian puts daemons in /usr/sbin, which only root's PATH holds.
_SEARCHED = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def required_program(name: str, install: str) -> str:
    """The path of `name`; fails the test under CI (`CI` set) when it is missing, else skips it."""
    found = shutil.which(name, path=_SEARCHED)
    if found is None:
        message = f"this test needs {name}: {install}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
