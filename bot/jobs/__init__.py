"""Jobs: durable rows, the fair dispatcher and the runner that turns them into images."""

from bot.jobs.dispatcher import POSITION_CAP, Place
from bot.jobs.listener import JobListener
from bot.jobs.runner import JobRunner
from bot.jobs.spool import Posted
from bot.jobs.store import JobOrigin

__all__ = ["POSITION_CAP", "JobListener", "JobOrigin", "JobRunner", "Place", "Posted"]
