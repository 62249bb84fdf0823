from __future__ import annotations

import pytest

from lake.keys import LakeKey


@pytest.fixture
def key() -> LakeKey:
    return LakeKey(bytes(range(32)))


@pytest.fixture
def other_key() -> LakeKey:
    return LakeKey(bytes(range(1, 33)))
