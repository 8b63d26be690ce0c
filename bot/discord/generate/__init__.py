"""Making images: the commands, the buttons and reactions on results, and posting results.

A feature package in the manner of python-discord/bot's ``exts/<feature>/``: the modules are
private.
"""

from __future__ import annotations

from bot.discord.generate._buttons import Actions
from bot.discord.generate._delivery import Delivery
from bot.discord.generate._intakes import IntakeResumer
from bot.discord.generate._views import DYNAMIC_ITEMS, route_modal

__all__ = ["DYNAMIC_ITEMS", "Actions", "Delivery", "IntakeResumer", "route_modal"]
