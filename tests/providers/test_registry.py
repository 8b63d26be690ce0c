"""The configured backends as the bot gets them: one Backend each, behind one interface."""

from __future__ import annotations

import aiohttp
import pytest

from bot.config import ProviderSettings, Settings
from bot.imaging import ImageWorker
from bot.providers import GenerateRequest, UnsupportedOption
from bot.providers.registry import build_backends
from bot.testing.openai_api import FakeImagesAPI
from tests.providers.conftest import MakeClient


async def _convert(mask: bytes) -> bytes:
    return mask


def _settings(**backends: ProviderSettings) -> Settings:
    return Settings(
        provider=ProviderSettings(model="dall-e-2", fallback=("gpu",)), backends=backends
    )


async def test_one_backend_per_configured_one_each_with_its_features(
    session: aiohttp.ClientSession, images: ImageWorker
) -> None:
    gpu = ProviderSettings(
        type="automatic1111", base_url="http://gpu:7860", model="", max_side=1024
    )
    mine = ProviderSettings(
        type="automatic1111", base_url="http://mine:7860", model="", enabled_guilds=(7,)
    )
    backends = build_backends(
        _settings(gpu=gpu, mine=mine),
        session,
        verify=images.verify_results,
        convert_mask=_convert,
    )
    assert backends.names() == ("default", "gpu", "mine")
    assert backends.default.features.kind == "openai" and not backends.default.features.sd_options
    sd = backends.get("gpu")
    assert sd.features.kind == "automatic1111" and sd.features.cancel_running
    spec = sd.spec_for(None)
    assert spec.name == "automatic1111" and spec.max_n == 4
    assert spec.allows_size("1024x576") and not spec.allows_size("1020x576")
    assert not spec.allows_size("1536x1536")  # over the operator's max_side
    assert (spec.qualities, spec.styles, spec.backgrounds) == ((), (), ())
    # "default" everywhere; a backend with enabled_guilds only there; DMs: no server's.
    assert backends.enabled_for(7) == ["default", "gpu", "mine"]
    assert backends.enabled_for(8) == ["default", "gpu"]
    assert backends.enabled_for(None) == ["default", "gpu"]
    assert backends.for_job("gone") is backends.default and backends.for_job(None).name == "default"
    assert [b.name for b in backends.fallbacks("default")] == ["gpu"]
    assert backends.fallbacks("gpu") == []
    assert (backends.concurrency("default"), backends.concurrency("gpu")) == (4, 1)
    await backends.aclose()


async def test_a_comfyui_backend_is_built_with_the_shipped_workflows(
    session: aiohttp.ClientSession, images: ImageWorker
) -> None:
    comfy = ProviderSettings(type="comfyui", base_url="http://127.0.0.1:8188", model="")
    backends = build_backends(
        _settings(comfy=comfy), session, verify=images.verify_results, convert_mask=_convert
    )
    try:
        built = backends.get("comfy")
        assert built.features.kind == "comfyui"
        assert built.features.sd_options and built.features.cancel_running
    finally:
        await backends.aclose()


@pytest.mark.parametrize(
    "option",
    [
        {"negative_prompt": "blurry"},
        {"seed": 42},
        {"steps": 30},
        {"guidance": 7.5},
        {"sampler": "Euler"},
        {"checkpoint": "sd_xl_base_1.0"},
    ],
)
async def test_the_openai_client_refuses_stable_diffusion_options(
    make_client: MakeClient, fake_images_api: FakeImagesAPI, option: dict[str, object]
) -> None:
    """Sent without them, the member would get images that ignore what they asked for."""
    client = make_client(model="dall-e-2")
    with pytest.raises(UnsupportedOption) as caught:
        await client.generate(GenerateRequest("a fox", size="256x256", **option))  # type: ignore[arg-type]
    assert "works only on Stable Diffusion backends" in caught.value.message
    assert fake_images_api.requests == []
