"""The buttons under every result: Vary n, Redo, Remix and Delete, as members use them."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from bot.testing.discord import FakeChannel, FakeMember, P, StoredMessage
from bot.testing.harness import Harness, field_value, job_id_of, new_result, seen_ids
from bot.testing.images import colour_of

#: The whole bot on SQLite and on PostgreSQL (tests/conftest.py: both_engines).
pytestmark = [pytest.mark.both_engines, pytest.mark.usefixtures("engine")]


def png(side: int, colour: tuple[int, int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(side: int) -> bytes:
    """Opaque except a transparent square in the middle: the area to repaint."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (side // 4, side // 4, 3 * side // 4, 3 * side // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def imagine(
    harness: Harness, prompt: str = "a lighthouse at dusk", n: int = 2, **options: object
) -> StoredMessage:
    before = seen_ids(harness.fake)
    handle = await harness.fake.slash(
        "imagine", {"prompt": prompt, "count": n, "size": "256x256", **options}
    )
    assert (await handle.response()).ephemeral
    return await new_result(harness, before)


def labels(message: StoredMessage) -> dict[str, str]:
    from bot.testing.discord.models import walk_components

    return {
        c["custom_id"]: c["label"] for c in walk_components(message.components) if "custom_id" in c
    }


async def test_every_result_has_vary_buttons_redo_remix_params_and_delete(harness: Harness) -> None:
    result = await imagine(harness, n=3)
    job = job_id_of(result)
    assert labels(result) == {
        f"ib:vary:{job}:0": "Vary 1",
        f"ib:vary:{job}:1": "Vary 2",
        f"ib:vary:{job}:2": "Vary 3",
        f"ib:act:upscale:{job}:0": "U1",
        f"ib:act:upscale:{job}:1": "U2",
        f"ib:act:upscale:{job}:2": "U3",
        f"ib:redo:{job}": "Redo",
        f"ib:remix:{job}": "Remix",
        f"ib:params:{job}": "Params",
        f"ib:delete:{job}": "Delete",
    }
    assert all(len(custom_id) <= 100 for custom_id in result.custom_ids)
    for row in result.components:
        assert row["type"] == 1 and len(row["components"]) <= 5


async def test_vary_2_by_another_member_varies_exactly_image_2(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=2)
    image_1, image_2 = first.files["image_1.png"], first.files["image_2.png"]
    assert colour_of(image_1) != colour_of(image_2)
    before = seen_ids(fake)

    click = await fake.click(first, f"ib:vary:{job_id_of(first)}:1", user=fake.admin)
    response = await click.response()
    assert response.type == 5 and response.ephemeral  # private "working" status

    result = await new_result(harness, before)
    assert result.embeds[0]["title"] == "Variation of image 2"
    assert result.content == fake.admin.mention and result.pinged_ids == [fake.admin.id]
    assert field_value(result, "Requested by") == fake.admin.mention
    assert len(result.attachments) == 2

    request = api.requests[-1]
    assert request.path == "/v1/images/variations"
    assert request.body["n"] == "2" and request.body["size"] == "256x256"
    sent = request.file("image")
    assert sent is not None
    with Image.open(io.BytesIO(sent.data)) as image:
        assert image.size == (256, 256)
    assert colour_of(sent.data) == colour_of(image_2)
    assert job_id_of(result) != job_id_of(first)
    # the first result is untouched and its buttons still there
    # V1, V2, U1, U2, Redo, Remix, Params, Delete
    assert not first.deleted and len(first.custom_ids) == 8


async def test_redo_of_an_imagine_result_makes_new_images_with_the_same_settings(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, prompt="a red bicycle", n=2)
    before = seen_ids(fake)
    click = await fake.click(first, f"ib:redo:{job_id_of(first)}", user=fake.admin)
    assert (await click.response()).ephemeral

    result = await new_result(harness, before)
    assert result.embeds[0]["description"] == "a red bicycle"
    assert result.content == fake.admin.mention and result.pinged_ids == [fake.admin.id]
    assert len(result.attachments) == 2
    first_request, redo_request = api.requests
    assert redo_request.path == "/v1/images/generations"
    for key in ("prompt", "n", "size", "model"):
        assert redo_request.body[key] == first_request.body[key]


async def test_redo_of_an_edit_result_sends_the_stored_image_and_mask_again(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    image = fake.add_attachment(png(256, (10, 200, 30, 255)), "photo.png")
    mask = fake.add_attachment(mask_png(256), "mask.png")
    before = seen_ids(fake)
    handle = await fake.slash(
        "edit",
        {"image": image, "mask": mask, "prompt": "add a hot-air balloon", "size": "256x256"},
    )
    assert (await handle.response()).ephemeral
    first = await new_result(harness, before)
    assert first.embeds[0]["title"] == "Edit"

    before = seen_ids(fake)
    click = await fake.click(first, f"ib:redo:{job_id_of(first)}", user=fake.user)
    assert (await click.response()).ephemeral
    result = await new_result(harness, before)
    assert result.embeds[0]["title"] == "Edit"
    assert result.embeds[0]["description"] == "add a hot-air balloon"

    edit_1, edit_2 = api.requests
    assert edit_1.path == edit_2.path == "/v1/images/edits"
    for name in ("image", "mask"):
        sent_1, sent_2 = edit_1.file(name), edit_2.file(name)
        assert sent_1 is not None and sent_2 is not None
        assert sent_2.data == sent_1.data
    assert edit_2.body["prompt"] == "add a hot-air balloon"


async def test_remix_opens_a_prefilled_modal_and_keeps_the_settings(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, prompt="a castle in the clouds", n=2)
    click = await fake.click(first, f"ib:remix:{job_id_of(first)}", user=fake.admin)
    assert (await click.response()).type == 9
    modal = click.modal
    assert modal is not None and modal["title"] == "Remix"
    from bot.testing.discord.models import walk_components

    (text_input,) = [c for c in walk_components(modal["components"]) if c.get("type") == 4]
    assert text_input["value"] == "a castle in the clouds"

    before = seen_ids(fake)
    submitted = await fake.submit_modal(
        click, {text_input["custom_id"]: "a castle under the sea"}, user=fake.admin
    )
    assert (await submitted.response()).ephemeral
    result = await new_result(harness, before)
    assert result.embeds[0]["description"] == "a castle under the sea"
    assert result.content == fake.admin.mention and result.pinged_ids == [fake.admin.id]
    assert len(result.attachments) == 2
    remix = api.requests[-1]
    assert remix.path == "/v1/images/generations"
    assert remix.body["prompt"] == "a castle under the sea"
    assert remix.body["n"] == 2 and remix.body["size"] == "256x256"


async def test_the_requester_deletes_a_result(harness: Harness) -> None:
    fake = harness.fake
    result = await imagine(harness, n=1)
    click = await fake.click(result, f"ib:delete:{job_id_of(result)}", user=fake.user)
    answer = await click.wait_message()
    assert answer.ephemeral and answer.content == "Deleted."
    assert result.deleted


async def test_another_member_may_not_delete_a_result(harness: Harness) -> None:
    fake = harness.fake
    result = await imagine(harness, n=1)
    carol = fake.add_member(fake.guild, "carol")
    click = await fake.click(result, f"ib:delete:{job_id_of(result)}", user=carol)
    response = await click.response()
    assert response.ephemeral
    answer = await click.wait_message()
    assert answer.ephemeral and "Manage Messages" in answer.content
    assert not result.deleted
    assert fake.messages(sources=("channel", "followup")) == [result]


async def test_a_member_with_manage_messages_may_delete_any_result(harness: Harness) -> None:
    fake = harness.fake
    result = await imagine(harness, n=1)
    assert fake.admin.permissions_in(fake.channel) & P.MANAGE_MESSAGES
    click = await fake.click(result, f"ib:delete:{job_id_of(result)}", user=fake.admin)
    answer = await click.wait_message()
    assert answer.ephemeral and answer.content == "Deleted."
    assert result.deleted


async def test_a_remix_submitted_after_the_result_was_deleted_is_answered(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    result = await imagine(harness, n=1)
    job = job_id_of(result)
    remix = await fake.click(result, f"ib:remix:{job}", user=fake.user)
    assert (await remix.response()).type == 9
    delete = await fake.click(result, f"ib:delete:{job}", user=fake.user)
    await delete.wait_message()
    assert result.deleted

    from bot.testing.discord.models import walk_components

    assert remix.modal is not None
    (text_input,) = [c for c in walk_components(remix.modal["components"]) if c.get("type") == 4]
    submitted = await fake.submit_modal(remix, {text_input["custom_id"]: "something else"})
    answer = await submitted.wait_message()
    assert answer.ephemeral and "no longer exists" in answer.content
    assert len(api.requests) == 1  # nothing was made


async def test_buttons_work_where_the_bot_may_not_post(harness: Harness) -> None:
    """Follow-ups need no channel permission: a click still gets its result."""
    fake = harness.fake
    first = await imagine(harness, n=2)
    fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
    await fake.flush()
    before = seen_ids(fake)
    click = await fake.click(first, f"ib:vary:{job_id_of(first)}:0", user=fake.admin)
    assert (await click.response()).ephemeral
    result = await new_result(harness, before)
    assert result.source == "followup" and result.pinged_ids == [fake.admin.id]


async def test_a_variation_has_no_remix_button(harness: Harness) -> None:
    """A variation has no prompt: Remix would silently make another plain variation."""
    fake = harness.fake
    first = await imagine(harness, n=2)
    before = seen_ids(fake)
    await fake.click(first, f"ib:vary:{job_id_of(first)}:0", user=fake.user)
    varied = await new_result(harness, before)
    job = job_id_of(varied)
    assert varied.custom_ids == [
        f"ib:vary:{job}:0",
        f"ib:vary:{job}:1",
        f"ib:act:upscale:{job}:0",
        f"ib:act:upscale:{job}:1",
        f"ib:redo:{job}",
        f"ib:params:{job}",
        f"ib:delete:{job}",
    ]


async def test_an_old_remix_button_on_a_variation_is_refused(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variations posted before Remix was taken off them: the button explains itself."""
    from bot.discord.generate import _results as results

    original = results.result_view
    monkeypatch.setattr(
        results, "result_view", lambda *args, **kw: original(*args, **{**kw, "remix": True})
    )
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=2)
    before = seen_ids(fake)
    await fake.click(first, f"ib:vary:{job_id_of(first)}:0", user=fake.user)
    varied = await new_result(harness, before)
    click = await fake.click(varied, f"ib:remix:{job_id_of(varied)}", user=fake.user)
    answer = await click.wait_message()
    assert answer.ephemeral and "no prompt" in answer.content
    assert click.modal is None and len(api.requests) == 2


async def test_two_members_deleting_at_once_both_get_a_sensible_answer(harness: Harness) -> None:
    fake = harness.fake
    result = await imagine(harness, n=1)
    custom_id = f"ib:delete:{job_id_of(result)}"
    first = await fake.click(result, custom_id, user=fake.user)
    second = await fake.click(result, custom_id, user=fake.admin)  # before the first is done
    answers = [await first.wait_message(), await second.wait_message()]
    assert all(answer.ephemeral for answer in answers)
    gone = "That result no longer exists or is too old to use."
    assert {answer.content for answer in answers} <= {"Deleted.", gone}
    assert "Deleted." in {answer.content for answer in answers}
    assert result.deleted


async def test_ten_images_get_ten_vary_buttons_in_rows_of_five(harness: Harness) -> None:
    result = await imagine(harness, n=10)
    job = job_id_of(result)
    assert len(result.attachments) == 10
    rows = [[c["custom_id"] for c in row["components"]] for row in result.components]
    assert rows == [
        [f"ib:vary:{job}:{i}" for i in range(5)],
        [f"ib:vary:{job}:{i}" for i in range(5, 10)],
        [f"ib:act:upscale:{job}:{i}" for i in range(5)],
        [f"ib:act:upscale:{job}:{i}" for i in range(5, 10)],
        [f"ib:redo:{job}", f"ib:remix:{job}", f"ib:params:{job}", f"ib:delete:{job}"],
    ]
    assert labels(result)[f"ib:vary:{job}:9"] == "Vary 10"
    assert labels(result)[f"ib:act:upscale:{job}:9"] == "U10"


# --- Delete removes everything; buttons on results past their retention ------------------------


async def edit_result(harness: Harness, n: int = 1, channel: Any = None, user: Any = None) -> Any:
    fake = harness.fake
    image = fake.add_attachment(png(256, (10, 200, 30, 255)), "photo.png")
    mask = fake.add_attachment(mask_png(256), "mask.png")
    before = seen_ids(fake)
    options = {"image": image, "mask": mask, "prompt": "add a kite", "size": "256x256", "count": n}
    handle = await fake.slash("edit", options, channel=channel, user=user or fake.user)
    assert (await handle.response()).ephemeral
    return await new_result(harness, before)


async def kept_images(harness: Harness, job_id: int) -> int:
    from sqlalchemy import func, select

    from bot.db.models import JobImage

    async with harness.bot.storage.sessions() as session:
        count = await session.execute(
            select(func.count(JobImage.id)).where(JobImage.job_id == job_id)
        )
        return int(count.scalar_one())


async def test_delete_removes_every_part_of_a_split_result_and_its_stored_images(
    harness: Harness,
) -> None:
    fake = harness.fake
    harness.api.noise_bits = 8  # answers no encoder shrinks: the result must be split
    guild = fake.add_guild("Small Server", upload_limit=80_000)
    channel = fake.add_channel(guild, "art")
    member = fake.add_member(guild, "carol")
    await fake.flush()
    first = await edit_result(harness, n=3, channel=channel, user=member)
    job = job_id_of(first)
    found = fake.messages(channel, sources=("channel", "followup"))
    parts = [m for m in found if m.attachments and not m.ephemeral]
    assert len(parts) >= 2 and first in parts
    assert await kept_images(harness, job) == 2  # the image and mask as sent

    click = await fake.click(first, f"ib:delete:{job}", user=member)
    answer = await click.wait_message()
    assert answer.ephemeral and answer.content == "Deleted."
    assert all(part.deleted for part in parts)
    assert await kept_images(harness, job) == 0


async def prune_as_if_days_passed(harness: Harness, days: int) -> None:
    from datetime import timedelta

    from bot.db.models import utcnow
    from bot.jobs.retention import prune

    later = utcnow() + timedelta(days=days)
    await prune(harness.bot.storage, timedelta(days=30), now=later)


async def test_redo_and_remix_of_an_edit_past_its_retention_say_it_is_too_old(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    first = await edit_result(harness)
    job = job_id_of(first)
    await prune_as_if_days_passed(harness, 31)
    assert await kept_images(harness, job) == 0

    too_old = "This result is older than 30 days; its images are no longer kept"
    redo = await fake.click(first, f"ib:redo:{job}", user=fake.user)
    answer = await redo.wait_message()
    assert answer.ephemeral and answer.content.startswith(too_old)
    remix = await fake.click(first, f"ib:remix:{job}", user=fake.user)
    answer = await remix.wait_message()
    assert answer.ephemeral and answer.content.startswith(too_old)
    assert remix.modal is None
    await harness.idle()
    assert len(api.requests) == 1  # nothing was made


async def test_past_its_retention_a_result_still_varies_and_a_prompt_is_still_redone(
    harness: Harness,
) -> None:
    """Vary reads the image from the Discord attachment; a prompt is kept with the ledger."""
    fake, api = harness.fake, harness.api
    edited = await edit_result(harness, n=2)
    imagined = await imagine(harness, prompt="a red kite", n=1)
    await prune_as_if_days_passed(harness, 31)

    before = seen_ids(fake)
    await fake.click(edited, f"ib:vary:{job_id_of(edited)}:0", user=fake.user)
    varied = await new_result(harness, before)
    assert varied.embeds[0]["title"] == "Variation of image 1"
    sent = api.requests[-1].file("image")
    assert sent is not None and colour_of(sent.data) == colour_of(edited.files["image_1.png"])

    before = seen_ids(fake)
    await fake.click(imagined, f"ib:redo:{job_id_of(imagined)}", user=fake.user)
    redone = await new_result(harness, before)
    assert redone.embeds[0]["description"] == "a red kite"


async def test_redo_of_an_old_variation_reads_its_image_from_the_result_it_varied(
    harness: Harness,
) -> None:
    fake, api = harness.fake, harness.api
    first = await imagine(harness, n=2)
    before = seen_ids(fake)
    await fake.click(first, f"ib:vary:{job_id_of(first)}:1", user=fake.user)
    varied = await new_result(harness, before)
    await prune_as_if_days_passed(harness, 31)

    before = seen_ids(fake)
    click = await fake.click(varied, f"ib:redo:{job_id_of(varied)}", user=fake.user)
    assert (await click.response()).ephemeral
    redone = await new_result(harness, before)
    assert redone.embeds[0]["title"] == "Variation"  # as any Redo of a variation
    vary_1, vary_2 = (r for r in api.requests if r.path.endswith("/variations"))
    sent_1, sent_2 = vary_1.file("image"), vary_2.file("image")
    assert sent_1 is not None and sent_2 is not None
    assert sent_2.data == sent_1.data  # the same image 2, read back from the first result


# --- a custom_id names a job: only a result of this server, on its own message, is acted on ----

NOT_THIS_RESULT = "That doesn't belong to a result in this message, so I can't act on it."


async def other_server(harness: Harness) -> tuple[FakeChannel, FakeMember]:
    """A second server with a member of its own."""
    fake = harness.fake
    guild = fake.add_guild("Other Server")
    channel = fake.add_channel(guild, "general")
    mallory = fake.add_member(guild, "mallory")
    await fake.flush()
    return channel, mallory


async def forged_remix(
    harness: Harness,
    member: FakeMember,
    channel: FakeChannel | None,
    target: StoredMessage,
    prompt: str,
) -> StoredMessage:
    """``member`` makes a result, opens its Remix form and sends it naming ``target``'s job
    (a modified client can send any custom_id with a form); the bot's answer."""
    fake = harness.fake
    before = seen_ids(fake)
    await fake.slash(
        "imagine", {"prompt": "a boat", "count": 1, "size": "256x256"}, user=member, channel=channel
    )
    own = await new_result(harness, before)
    remix = await fake.click(own, f"ib:remix:{job_id_of(own)}", user=member)
    assert (await remix.response()).type == 9 and remix.modal is not None
    from bot.testing.discord.models import walk_components

    (text_input,) = [c for c in walk_components(remix.modal["components"]) if c.get("type") == 4]
    submitted = await fake.submit_modal(
        remix,
        {text_input["custom_id"]: prompt},
        forged_custom_id=f"ib:remix-modal:{job_id_of(target)}",
    )
    answer = await submitted.wait_message()
    await harness.idle()
    return answer


async def test_a_remix_form_naming_another_servers_job_is_refused(harness: Harness) -> None:
    fake, api = harness.fake, harness.api
    private = await imagine(harness, prompt="our private lighthouse", n=1)
    channel, mallory = await other_server(harness)
    calls, before = len(api.requests), seen_ids(fake)
    answer = await forged_remix(harness, mallory, channel, private, "the same, at night")
    assert answer.ephemeral and answer.content == NOT_THIS_RESULT
    assert len(api.requests) == calls + 1  # only her own result: nothing from the other server
    posted = [m for m in fake.state.messages.values() if m.id not in before and m.attachments]
    assert [m.embeds[0]["description"] for m in posted] == ["a boat"]


async def test_a_remix_form_naming_another_result_of_the_same_server_is_refused(
    harness: Harness,
) -> None:
    """Carol sends her Remix form naming Bob's edit (and so his private upload)."""
    fake, api = harness.fake, harness.api
    picture = fake.add_attachment(mask_png(256), "my-room.png")  # transparent: to repaint
    before = seen_ids(fake)
    await fake.slash(
        "edit", {"image": picture, "prompt": "a red sofa", "size": "256x256"}, user=fake.user
    )
    private = await new_result(harness, before)
    carol = fake.add_member(fake.guild, "carol")
    calls = len(api.requests)
    answer = await forged_remix(harness, carol, None, private, "a green sofa")
    assert answer.ephemeral and answer.content == NOT_THIS_RESULT
    assert len(api.requests) == calls + 1  # only her own result
    assert [r.path for r in api.requests].count("/v1/images/edits") == 1
