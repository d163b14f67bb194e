"""The studio as the tests call it: its app, asked for by the loopback address a browser would use."""

from __future__ import annotations

from fastapi.testclient import TestClient

from finetune_kit.studio import StudioSettings, create_app

LOOPBACK_URL = "http://127.0.0.1:7860"


def studio_client(settings: StudioSettings, **options) -> TestClient:
    return TestClient(create_app(settings), base_url=LOOPBACK_URL, **options)
