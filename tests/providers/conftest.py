"""Provider test helpers: a real aiohttp session, an image worker, a client factory and a
recording sleep."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.config import ProviderSettings
from bot.imaging import ImageWorker
from bot.providers import ImagesClient, build_model_table
from bot.providers.client import OnRateLimited
from bot.testing.openai_api import FakeImagesAPI


class RecordingSleep:
    """Stands in for asyncio.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def images() -> AsyncIterator[ImageWorker]:
    """The bounded worker the client verifies answers on, as the composition root passes it."""
    async with ImageWorker() as worker:
        yield worker


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


MakeClient = Callable[..., ImagesClient]


@pytest.fixture
def make_client(
    fake_images_api: FakeImagesAPI,
    session: aiohttp.ClientSession,
    sleeps: RecordingSleep,
    images: ImageWorker,
) -> MakeClient:
    """Build a client against the fake; keyword arguments override ProviderSettings fields."""

    def make(
        *,
        models: dict[str, Any] | None = None,
        name: str = "default",
        on_rate_limited: OnRateLimited | None = None,
        **overrides: Any,
    ) -> ImagesClient:
        values: dict[str, Any] = {
            "base_url": fake_images_api.base_url,
            "api_key": fake_images_api.api_key,
            "user_salt": "test-salt",
        }
        values.update(overrides)
        settings = ProviderSettings(models=models or {}, **values)
        table = build_model_table(settings.models)
        return ImagesClient(
            session,
            settings,
            table,
            name=name,
            verify=images.verify_results,
            sleep=sleeps,
            random=lambda: 0.5,
            on_rate_limited=on_rate_limited,
        )

    return make


def png(
    width: int = 64, height: int = 64, mode: str = "RGBA", colour: Any = (10, 20, 30, 0)
) -> bytes:
    """A small real PNG; transparent by default, like an image prepared for an edit."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, Any]) -> aiohttp.FormData:
    """A form as the client sends it: bytes as PNG files, everything else as text fields."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename=f"{name}.png", content_type="image/png")
        else:
            form.add_field(name, str(value))
    return form
