"""Bot extensions, one per feature, loaded in setup_hook."""

EXTENSIONS = (
    "bot.discord.exts.generate",
    "bot.discord.exts.reactions",
    "bot.discord.exts.quotas",
    "bot.discord.exts.usage",
)
