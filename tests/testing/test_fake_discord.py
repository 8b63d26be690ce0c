"""The fake Discord against a real discord.py 2.7 client (a minimal bot defined here)."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.testing.discord import FakeDiscord, Intent, P, StoredMessage
from bot.testing.openapi import load_spec


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A small valid RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes((x + seed) % 256 for x in range(width * 3)) for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


RESULT = png(8, 8)


class VaryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"vary:(?P<job>\d+)"):
    """A persistent button: its state lives in the custom_id, so it survives restarts."""

    def __init__(self, job: int) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label="Vary", style=discord.ButtonStyle.primary, custom_id=f"vary:{job}"
        )
        super().__init__(button)
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> VaryButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"varying job {self.job}", ephemeral=True)


class PromptModal(discord.ui.Modal, title="Edit prompt"):
    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt", max_length=1000
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"new prompt: {self.prompt.value}")


class MenuView(discord.ui.View):
    """A non-persistent view: discord.py routes its clicks by the message id of the reply."""

    def __init__(self, done: asyncio.Queue[str]) -> None:
        super().__init__(timeout=None)
        self.done = done

    @discord.ui.select(
        custom_id="pick",
        options=[
            discord.SelectOption(label="A", value="a"),
            discord.SelectOption(label="B", value="b"),
        ],
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select[Any]) -> None:
        await interaction.response.edit_message(content=f"picked {select.values[0]}")

    @discord.ui.button(label="Stop", custom_id="stop")
    async def stop_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="stopped", view=None)
        await self.done.put((await interaction.original_response()).content)


class MiniBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True
        super().__init__(
            command_prefix=commands.when_mentioned, intents=intents, guild_ready_timeout=0.05
        )
        self.guild_id = guild_id
        self.errors: asyncio.Queue[BaseException] = asyncio.Queue()
        self.reactions: asyncio.Queue[discord.RawReactionActionEvent] = asyncio.Queue()
        self.done: asyncio.Queue[str] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(VaryButton)
        guild = discord.Object(self.guild_id)

        @self.tree.command(description="Make an image")
        @app_commands.describe(prompt="What to draw")
        async def imagine(
            interaction: discord.Interaction,
            prompt: str,
            count: app_commands.Range[int, 1, 4] = 1,
            image: discord.Attachment | None = None,
            private: bool = False,
        ) -> None:
            await interaction.response.defer(thinking=True, ephemeral=private)
            data = await image.read() if image is not None else RESULT
            embed = discord.Embed(title=prompt, description=f"{count} image(s)")
            embed.set_image(url="attachment://result.png")
            view = discord.ui.View(timeout=None)
            view.add_item(VaryButton(42))
            file = discord.File(io.BytesIO(data), "result.png")
            await interaction.followup.send(embed=embed, file=file, view=view)

        @self.tree.command(description="Reply, edit the reply, send and delete a follow-up")
        async def queue(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("queued #1")
            file = discord.File(io.BytesIO(RESULT), "r.png")
            await interaction.edit_original_response(content="done", attachments=[file])
            note = await interaction.followup.send("extra", wait=True)
            await note.delete()
            await self.done.put("queue")

        @self.tree.command(description="A menu")
        async def menu(interaction: discord.Interaction) -> None:
            file = discord.File(io.BytesIO(RESULT), "r.png")
            await interaction.response.send_message("choose", view=MenuView(self.done), file=file)

        @self.tree.command(description="Slow on purpose")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            await interaction.response.send_message("too late")

        @self.tree.command(description="Server settings", guild=guild)
        @app_commands.default_permissions(manage_guild=True)
        async def settings(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(PromptModal())

        @self.tree.context_menu(name="Vary this")
        async def vary_this(interaction: discord.Interaction, message: discord.Message) -> None:
            await interaction.response.send_message(f"varying {message.id}", ephemeral=True)

        @self.tree.error
        async def on_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            await self.errors.put(getattr(error, "original", error))

        await self.tree.sync()
        await self.tree.sync(guild=guild)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self.reactions.put(payload)


async def download(url: str) -> tuple[bytes, Mapping[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.read(), dict(resp.headers)


async def test_login_ready_and_guild_cache_over_zlib_stream(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        assert fake.gateway.queries[-1] == {
            "v": "10",
            "encoding": "json",
            "compress": "zlib-stream",
        }
        identify = fake.identify_payloads[-1]
        assert identify["token"] == fake.token
        assert identify["intents"] == Intent.GUILDS | Intent.GUILD_MESSAGE_REACTIONS
        assert bot.user is not None and bot.user.id == fake.bot_user.id
        assert bot.application_id == fake.application_id
        guild = bot.get_guild(fake.guild.id)
        assert guild is not None and guild.name == "Test Server"
        channel = guild.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        perms = channel.permissions_for(guild.me)
        assert perms.send_messages and perms.attach_files and not perms.manage_messages
        paths = [(r.method, r.path) for r in fake.requests]
        assert paths[:2] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    assert fake.spec_violations == []


async def test_age_restricted_channels_and_their_threads_are_nsfw_to_discord_py(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    after_dark = fake.add_channel(name="after-dark", nsfw=True)
    thread = fake.add_thread(after_dark, "night shots")
    assert after_dark.to_json()["nsfw"] is True and fake.channel.to_json()["nsfw"] is False
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        guild = bot.get_guild(fake.guild.id)
        assert guild is not None
        nsfw = guild.get_channel(after_dark.id)
        in_thread = guild.get_channel_or_thread(thread.id)
        ordinary = guild.get_channel(fake.channel.id)
        assert isinstance(nsfw, discord.TextChannel) and nsfw.is_nsfw()
        assert isinstance(in_thread, discord.Thread) and in_thread.is_nsfw()
        assert isinstance(ordinary, discord.TextChannel) and not ordinary.is_nsfw()
    assert fake.spec_violations == []


async def test_command_sync_is_recorded(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)):
        names = {(c["name"], c["type"]) for c in fake.commands}
        assert names == {("imagine", 1), ("menu", 1), ("queue", 1), ("slow", 1), ("Vary this", 3)}
        (settings,) = fake.guild_commands[fake.guild.id]
        assert settings["name"] == "settings" and settings["guild_id"] == str(fake.guild.id)
        assert settings["default_member_permissions"] == str(int(P.MANAGE_GUILD))
        imagine = next(c for c in fake.commands if c["name"] == "imagine")
        assert [o["name"] for o in imagine["options"]] == ["prompt", "count", "image", "private"]
    assert fake.spec_violations == []


async def test_slash_defers_then_follow_up_with_file_served_by_cdn(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    upload = png(4, 4, seed=7)
    async with fake.running(MiniBot(fake.guild.id)):
        image = fake.add_attachment(upload, "cat.png")
        assert (image["width"], image["height"], image["size"]) == (4, 4, len(upload))
        handle = await fake.slash("imagine", {"prompt": "a cat", "count": 2, "image": image})
        response = await handle.response()
        assert response.type == 5 and not response.ephemeral
        assert handle.responded_within is not None and handle.responded_within < 3
        msg = await handle.wait_message(lambda m: bool(m.attachments))
    assert msg is handle.original and handle.followups == [msg]  # the follow-up filled it in
    assert msg.files == {"result.png": upload}  # the bot read the member's upload via the CDN
    assert msg.embeds[0]["title"] == "a cat" and msg.embeds[0]["description"] == "2 image(s)"
    assert msg.embeds[0]["image"]["url"] == msg.attachments[0].url
    assert msg.custom_ids == ["vary:42"] and msg.interaction_id == handle.id
    body, headers = await download(msg.attachments[0].url)
    assert body == upload
    assert headers["Content-Type"] == "image/png" and headers["Content-Length"] == str(len(upload))
    assert fake.spec_violations == []


async def test_ephemeral_defer_keeps_messages_private(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)):
        handle = await fake.slash("imagine", {"prompt": "secret", "private": True})
        assert (await handle.response()).ephemeral
        msg = await handle.wait_message()
    assert msg.ephemeral and msg.flags & 64 and handle.ephemeral
    assert fake.messages() == [] and fake.messages(sources=("response",)) == [msg]
    assert fake.spec_violations == []


async def test_persistent_button_works_after_a_restart(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)):
        handle = await fake.slash("imagine", {"prompt": "a dog"})
        msg = await handle.wait_message()
    assert not fake.connected
    async with fake.running(MiniBot(fake.guild.id)):  # a new process: IDENTIFY + READY again
        assert len(fake.identify_payloads) == 2
        click = await fake.click(msg, "vary:42", user=fake.admin)
        response = await click.response()
        assert response.type == 4 and response.data["content"] == "varying job 42"
        assert response.ephemeral
    assert fake.spec_violations == []


async def test_select_update_and_deferred_update_edit_the_clicked_message(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        handle = await fake.slash("menu")
        assert (await handle.response()).type == 4
        msg = handle.original
        assert msg is not None and msg.files == {"r.png": RESULT}
        assert msg.custom_ids == ["pick", "stop"]
        with pytest.raises(ValueError):
            await fake.click(msg, "pick", values=["c"])
        picked = await fake.click(msg, "pick", values=["b"])
        assert (await picked.response()).type == 7 and msg.content == "picked b"
        stopped = await fake.click(msg, "stop")
        assert await asyncio.wait_for(bot.done.get(), 5) == "stopped"
        assert (await stopped.response()).type == 6 and stopped.original is msg
    assert msg.content == "stopped" and msg.components == []
    assert fake.spec_violations == []


async def test_modal_submit(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)):
        with pytest.raises(PermissionError):  # default_member_permissions: Manage Server
            await fake.slash("settings", user=fake.user)
        opened = await fake.slash("settings", user=fake.admin)
        assert (await opened.response()).type == 9
        assert opened.modal is not None and opened.modal["title"] == "Edit prompt"
        submitted = await fake.submit_modal(opened, {"prompt": "a red fox"})
        response = await submitted.response()
        assert response.type == 4 and response.data["content"] == "new prompt: a red fox"
        with pytest.raises(ValueError, match="required"):
            await fake.submit_modal(opened, {})
    assert fake.spec_violations == []


async def test_message_context_menu(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)):
        target = await fake.post_message("look at this", user=fake.user)
        handle = await fake.context_menu("Vary this", target)
        response = await handle.response()
        assert response.data["content"] == f"varying {target.id}"
    assert fake.spec_violations == []


async def test_reaction_reaches_the_listener(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("result")
        await sent.add_reaction("🔁")
        mine = await asyncio.wait_for(bot.reactions.get(), 5)
        assert mine.user_id == fake.bot_user.id  # bots receive their own reactions too
        stored = await fake.wait_for_message(lambda m: m.content == "result")
        await fake.react(stored, "🔁", user=fake.user)
        payload = await asyncio.wait_for(bot.reactions.get(), 5)
    assert payload.message_id == stored.id and payload.emoji.name == "🔁"
    assert payload.user_id == fake.user.id and payload.member is not None
    assert payload.guild_id == fake.guild.id
    assert stored.reaction_users("🔁") == [fake.bot_user.id, fake.user.id]
    assert fake.spec_violations == []


@pytest.mark.skipif(load_spec("discord") is None, reason="../shared/specs is absent")
async def test_spec_violations_are_recorded_and_rejected(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        route = discord.http.Route(
            "POST", "/channels/{channel_id}/messages", channel_id=fake.channel.id
        )
        with pytest.raises(discord.HTTPException) as raw:
            await bot.http.request(route, json={"content": 5, "tts": "yes"})
        assert raw.value.status == 400 and raw.value.code == 50035
    assert [v.split(": ")[1] for v in fake.spec_violations] == ["content", "tts"]
    assert fake.messages() == []
    fake.spec_violations.clear()


async def test_discord_limits_beyond_the_spec(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as long:
            await channel.send("x" * 2001)  # the spec allows 4000; bots get 2000
        assert long.value.code == 50035 and "2000 or fewer" in str(long.value)
        embed = discord.Embed(title="t", description="d" * 4000)
        with pytest.raises(discord.HTTPException) as big:
            await channel.send(embeds=[embed, embed])
        assert "6000" in str(big.value)
        with pytest.raises(discord.HTTPException) as empty:
            await bot.http.send_message(
                fake.channel.id, params=discord.http.handle_message_parameters()
            )
        assert empty.value.code == 50006
    assert len(fake.spec_violations) == 3 and fake.messages() == []
    fake.spec_violations.clear()


async def test_injected_unknown_webhook_surfaces_as_not_found(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        fake.fail_next("POST", r"^/webhooks/\d+/", 404, 10015, "Unknown Webhook")
        handle = await fake.slash("imagine", {"prompt": "a cat"})
        error = await asyncio.wait_for(bot.errors.get(), 5)
        assert isinstance(error, discord.NotFound) and error.code == 10015
        assert handle.followups == [] and handle.original is not None and handle.original.loading
    assert fake.spec_violations == []


async def test_missing_permissions_surface_as_forbidden(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        updated = asyncio.ensure_future(bot.wait_for("guild_channel_update", timeout=5))
        fake.set_bot_permissions(fake.channel, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY)
        await updated
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        with pytest.raises(discord.Forbidden) as denied:
            await channel.send("hello")
        assert denied.value.code == 50013
        assert not channel.permissions_for(channel.guild.me).send_messages
        hidden = fake.add_channel(name="hidden", bot_permissions=0)
        with pytest.raises(discord.Forbidden) as no_access:
            await bot.http.send_message(
                hidden.id, params=discord.http.handle_message_parameters("x")
            )
        assert no_access.value.code == 50001
        with pytest.raises(discord.NotFound) as unknown:
            await bot.http.get_channel(12345)
        assert unknown.value.code == 10003
    assert fake.spec_violations == []


async def test_interaction_timing_rules() -> None:
    async with FakeDiscord(response_deadline=0.1) as fake:
        async with fake.running(MiniBot(fake.guild.id)) as bot:
            late = await fake.slash("slow")
            error = await asyncio.wait_for(bot.errors.get(), 5)
            assert isinstance(error, discord.NotFound) and error.code == 10062
            assert late.record.late_callback and late.response_type is None

            handle = await fake.slash("imagine", {"prompt": "a cat"})
            await handle.wait_message()
            url = f"{fake.api_base}/interactions/{handle.id}/{handle.token}/callback"
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json={"type": 5}) as again:
                    assert again.status == 400 and (await again.json())["code"] == 40060
                fake.expire_interaction(handle)
                webhook = f"{fake.api_base}/webhooks/{fake.application_id}/{handle.token}"
                async with http.post(webhook, json={"content": "late"}) as expired:
                    assert expired.status == 401 and (await expired.json())["code"] == 50027
        assert fake.spec_violations == []


async def test_gateway_resume_after_a_dropped_connection(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        resumed = asyncio.Event()

        async def on_resumed() -> None:
            resumed.set()

        bot.add_listener(on_resumed)
        await fake.disconnect(4000)
        await asyncio.wait_for(resumed.wait(), 5)
        assert len(fake.identify_payloads) == 1  # resumed, not re-identified
        handle = await fake.slash("imagine", {"prompt": "after resume"})
        assert (await handle.wait_message()).embeds[0]["title"] == "after resume"
    assert fake.spec_violations == []


async def test_wrong_token_fails_login(fake_discord: FakeDiscord) -> None:
    bot = MiniBot(fake_discord.guild.id)
    with fake_discord.patch_discord(), pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()


async def test_slash_helper_enforces_what_discords_client_enforces(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    fake.commands.append(
        {
            "id": "1",
            "name": "imagine",
            "type": 1,
            "options": [
                {"name": "prompt", "type": 3, "required": True, "max_length": 10},
                {"name": "count", "type": 4, "min_value": 1, "max_value": 4},
            ],
        }
    )
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({}, ValueError),
        ({"prompt": "x" * 11}, ValueError),
        ({"prompt": "ok", "count": 5}, ValueError),
        ({"prompt": "ok", "count": "2"}, TypeError),
        ({"prompt": "ok", "size": 1}, LookupError),
    ]
    for options, error in cases:
        with pytest.raises(error):
            await fake.slash("imagine", options)


async def test_reply_edit_original_and_delete_follow_up(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        handle = await fake.slash("queue")
        assert await asyncio.wait_for(bot.done.get(), 5) == "queue"
    original = handle.original
    assert original is not None and original.content == "done"
    assert original.revisions[0]["content"] == "queued #1" and original.edited_timestamp
    assert original.files == {"r.png": RESULT}
    (note,) = handle.followups
    assert note.content == "extra" and note.deleted and note.source == "followup"
    assert fake.spec_violations == []


async def test_channel_messages_mentions_edits_dms_and_rate_limits(
    fake_discord: FakeDiscord,
) -> None:
    fake = fake_discord
    quiet = fake.add_member(None, "quiet", accepts_dms=False)
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        channel = bot.get_channel(fake.channel.id)
        assert isinstance(channel, discord.TextChannel)
        fake.fail_next("POST", r"/channels/\d+/messages$", 429, 0, "You are being rate limited.")
        no_ping = discord.AllowedMentions(users=False)
        sent = await channel.send(f"{fake.user.user.mention} done", allowed_mentions=no_ping)
        assert [r.status for r in fake.requests if r.method == "POST"][-2:] == [429, 200]
        (stored,) = fake.messages()
        assert stored.mentioned_ids == [fake.user.id] and stored.pinged_ids == []
        await sent.edit(content="edited")
        await sent.delete()
        member = await bot.fetch_user(fake.user.id)
        await member.send("hello in private")
        with pytest.raises(discord.Forbidden) as refused:
            await (await bot.fetch_user(quiet.id)).send("hi")
        assert refused.value.code == 50007
    assert stored.content == "edited" and stored.deleted and stored.source == "channel"
    (dm,) = fake.messages(fake.dm_channel(fake.user))
    assert dm.content == "hello in private" and dm.guild_id is None
    assert fake.spec_violations == []


async def test_upload_over_the_interaction_limit_is_rejected(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    fake.guild.upload_limit = 50  # attachment_size_limit of this guild's interactions
    async with fake.running(MiniBot(fake.guild.id)) as bot:
        handle = await fake.slash("imagine", {"prompt": "big"})
        error = await asyncio.wait_for(bot.errors.get(), 5)
    assert handle.payload["attachment_size_limit"] == 50
    assert isinstance(error, discord.HTTPException) and error.status == 413
    assert error.code == 40005
    assert fake.spec_violations == [
        f"POST /webhooks/{{webhook_id}}/{{webhook_token}}: upload of {len(RESULT)} bytes "
        "exceeds the limit of 50"
    ]
    fake.spec_violations.clear()


async def test_auto_sharded_client_uses_gateway_bot(fake_discord: FakeDiscord) -> None:
    fake = fake_discord
    intents = discord.Intents.none()
    intents.guilds = True
    client = discord.AutoShardedClient(intents=intents, guild_ready_timeout=0.05)
    async with fake.running(client):
        assert client.get_guild(fake.guild.id) is not None
    assert ("GET", "/gateway/bot") in [(r.method, r.path) for r in fake.requests]
    assert fake.identify_payloads[-1]["shard"] == [0, 1]


async def test_privileged_intents_must_be_enabled(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.none()
    intents.guilds = intents.members = True
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with fake_discord.running(client):
            pass


async def test_raw_gateway_text_frames_and_bad_token(fake_discord: FakeDiscord) -> None:
    url = fake_discord.gateway_url + "?v=10&encoding=json"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        hello = await ws.receive_json(timeout=5)  # a text frame: no compress= in the query
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
        await ws.send_json({"op": 1, "d": None})
        assert (await ws.receive_json(timeout=5))["op"] == 11
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})
        closing = await ws.receive(timeout=5)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4004


def test_stored_message_helpers() -> None:
    msg = StoredMessage(1, 2, 3, {"id": "9"}, "channel", content="hi <@5> and <@!6>")
    assert msg.mentioned_ids == [5, 6] and msg.files == {} and not msg.ephemeral


async def test_multipart_bodies_are_read_as_discord_reads_them(fake_discord: FakeDiscord) -> None:
    """The fake reads an upload whole and cuts it at its boundaries (not 8 KB at a time): every
    part's bytes and file name as sent, and a malformed body refused as Discord does."""
    fake = fake_discord
    url = f"{fake.api_base}/channels/{fake.channel.id}/messages"
    auth = {"Authorization": f"Bot {fake.token}"}
    big, small = png(600, 600, seed=3), png(2, 2, seed=4)
    form = aiohttp.FormData()
    form.add_field("payload_json", '{"content": "two files"}', content_type="application/json")
    form.add_field("files[0]", big, filename="grand café.png", content_type="image/png")
    form.add_field("files[1]", small, filename="b.png", content_type="image/png")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=form, headers=auth) as sent:
            assert sent.status == 200, await sent.text()
        (stored,) = [m for m in fake.messages(fake.channel) if m.content == "two files"]
        # aiohttp (discord.py's client) sends the name percent-encoded, as it is stored
        assert stored.files == {"grand%20caf%C3%A9.png": big, "b.png": small}

        boundary = "xyzzy"
        head = {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        part = f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n\r\n{{}}'
        for body, field in (
            (part, "<body>"),  # no closing delimiter
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="extra"\r\n\r\nx\r\n'
                f"--{boundary}--\r\n",
                "extra",
            ),
        ):
            async with http.post(url, data=body.encode(), headers=head) as refused:
                answer = await refused.json()
                assert refused.status == 400 and answer["code"] == 50035
                assert field in answer["errors"]
