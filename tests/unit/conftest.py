"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from echo.http.app import create_api
from tests.fakes import FakeMemory, make_brain


@pytest.fixture
def make_client(tmp_path):
    """make_client(token=..., **options) -> (TestClient, memory): the HTTP API over a Brain with
    fakes in tmp_path (tests.fakes.make_brain takes the options: manifest, circuits, memory and
    config overrides). raise_server_exceptions=False turns a server error into a 500 response."""

    def make(*, token: str | None, memory: FakeMemory | None = None, raise_server_exceptions: bool = True, **options):
        memory = FakeMemory() if memory is None else memory
        brain = make_brain(tmp_path, token=token, memory=memory, **options)
        return TestClient(create_api(lambda: brain), raise_server_exceptions=raise_server_exceptions), memory

    return make
