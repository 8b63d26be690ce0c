"""Self-hosted Discord bot for AI image generation."""
