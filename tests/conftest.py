"""Shared test fixtures and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COMPAT_FIXTURE = SHARED / "fixtures" / "ox4rl_compat"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def compat_fixture() -> Path:
    """The reference checkpoint and its exact inference outputs (shared/fixtures/ox4rl_compat)."""
    if not (COMPAT_FIXTURE / "checkpoint.pth").exists():
        pytest.skip(f"reference fixture not found at {COMPAT_FIXTURE} (../shared beside the repo)")
    return COMPAT_FIXTURE
