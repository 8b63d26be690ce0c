"""Bot extensions, one per feature, loaded in setup_hook."""

EXTENSIONS = ("bot.discord.exts.generate", "bot.discord.exts.reactions")
