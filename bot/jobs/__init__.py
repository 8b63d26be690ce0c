"""Jobs: durable rows and the runner that turns them into images."""

from bot.jobs.runner import InternalError, JobListener, JobRunner
from bot.jobs.store import JobOrigin

__all__ = ["InternalError", "JobListener", "JobOrigin", "JobRunner"]
