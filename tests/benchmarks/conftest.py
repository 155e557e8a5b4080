"""The models both benchmarks run on."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def adapter(request):
    return request.getfixturevalue(f"{request.param}_adapter")
