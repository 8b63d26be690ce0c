"""Storage: SQLAlchemy models, engine setup, migrations and repository functions."""

from bot.db.engine import create_engine, create_sessionmaker
from bot.db.migrate import upgrade_database
from bot.db.models import Base, Job, JobStatus

__all__ = ["Base", "Job", "JobStatus", "create_engine", "create_sessionmaker", "upgrade_database"]
