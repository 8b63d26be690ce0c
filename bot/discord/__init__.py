"""The Discord layer: the only package that imports discord.py."""
