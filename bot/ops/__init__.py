"""Running the bot as a service: health, metrics and start-up checks for operators."""
