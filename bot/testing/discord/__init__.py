"""A fake Discord (REST v10, gateway, CDN) that a real discord.py 2.7 client can run against.

See :mod:`.server` for the overview; bot/testing/test_fake_discord.py shows every helper in use.
"""

from .checks import Upload
from .handle import CallbackResponse, InteractionHandle
from .models import (
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    StoredAttachment,
    StoredMessage,
)
from .payloads import ADMIN_PERMISSIONS, BOT_PERMISSIONS, EVERYONE_PERMISSIONS, Intent, P
from .rest import RequestRecord
from .server import FakeDiscord

__all__ = [
    "ADMIN_PERMISSIONS",
    "BOT_PERMISSIONS",
    "EVERYONE_PERMISSIONS",
    "CallbackResponse",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeRole",
    "FakeUser",
    "Intent",
    "InteractionHandle",
    "P",
    "RequestRecord",
    "StoredAttachment",
    "StoredMessage",
    "Upload",
]
