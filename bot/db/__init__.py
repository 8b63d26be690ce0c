"""Storage: SQLAlchemy models, engine setup, migrations and repository functions."""

from bot.db.engine import Sessions, create_engine, create_sessionmaker
from bot.db.migrate import upgrade_database
from bot.db.models import Base, ImageRole, Job, JobImage, JobStatus

__all__ = [
    "Base",
    "ImageRole",
    "Job",
    "JobImage",
    "JobStatus",
    "Sessions",
    "create_engine",
    "create_sessionmaker",
    "upgrade_database",
]
