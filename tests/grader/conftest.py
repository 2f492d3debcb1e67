"""Fixtures for the grader tests: real programs, a real sandbox, no mocks."""
import shutil
import sys
from pathlib import Path

import pytest

import grader

# The tests import grader_helpers by name, whether or not tests/ is laid out as packages.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def bwrap_grader():
    """One bubblewrap Grader (2 workers) for the whole session: fork servers start once."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install -y bubblewrap)")
    with grader.Grader(workers=2, sandbox="bwrap") as g:
        yield g
