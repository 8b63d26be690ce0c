"""Content rules and visibility: blocked terms, the provider's moderation pre-check, NSFW and
spoiler rules by channel, the audit channel's entries and spend alerts.

Pure rules and their storage; the Discord layer renders and posts, the jobs layer calls these
at admission and at a job's end.
"""
