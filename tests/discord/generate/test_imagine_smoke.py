from __future__ import annotations

from bot.testing.harness import Harness


async def test_imagine_posts_a_result(harness: Harness) -> None:
    fake = harness.fake
    handle = await fake.slash("imagine", {"prompt": "a white siamese cat", "count": 2})
    response = await handle.response()
    assert response.type == 5 and response.ephemeral
    result = await harness.result()
    assert len(result.attachments) == 2
    assert len(result.embeds) == 2
    print(result.content, result.embeds[0])
