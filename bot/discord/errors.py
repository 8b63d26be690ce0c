"""Errors only the Discord layer raises; their keys are translated like every other BotError."""

from __future__ import annotations

from bot.errors import BotError


class NotRequester(BotError):
    key = "error.not_requester"
    template = (
        "Only the member who asked for these images, or someone with the Manage Messages "
        "permission, can do that."
    )


class ResultGone(BotError):
    key = "error.result_gone"
    template = "That result no longer exists or is too old to use."


class ResultTooOld(BotError):
    """Redo, Remix or Retry of a result whose uploads were pruned (``[storage] retention_days``)."""

    key = "error.result_too_old"
    template = (
        "This result is older than {days} days; its images are no longer kept, so it cannot be "
        "made again. Start a new request with the image instead."
    )


class NotThisResult(BotError):
    """A button, modal or reaction naming a job of another server or another message."""

    key = "error.not_this_result"
    template = "That doesn't belong to a result in this message, so I can't act on it."


class NoSuchImage(BotError):
    key = "error.no_such_image"
    template = "That result has no image {index}."


class NothingToRemix(BotError):
    key = "error.nothing_to_remix"
    template = "A variation has no prompt to remix. Use Vary or Redo instead."


class NoImageInMessage(BotError):
    key = "error.no_image_in_message"
    template = "That message has no image to vary."


class UploadUnavailable(BotError):
    """Discord's CDN would not give us a member's upload: a Discord problem, not the provider's."""

    key = "error.upload_unavailable"
    template = "I couldn't download your upload from Discord. Please upload the file again."


class AttachmentNotImage(BotError):
    key = "error.attachment_not_image"
    template = "“{filename}” is not an image. Upload a PNG, JPEG, WebP, GIF, BMP or TIFF file."


class BotMissingPermissions(BotError):
    key = "error.bot_missing_permissions"
    template = "I can't post here: I'm missing the {permissions} permission(s) in this channel."


class MemberMissingPermissions(BotError):
    key = "error.member_missing_permissions"
    template = "You need the {permissions} permission(s) to do that."


class GuildOnly(BotError):
    key = "error.guild_only"
    template = "This command works only in a server."


class OnCooldown(BotError):
    key = "error.cooldown"
    template = "Slow down: try again in {seconds:.0f} s."


class CannotCancel(BotError):
    key = "error.cannot_cancel"
    template = "That request has already started (or finished), so it can no longer be cancelled."


class NoDefaultGiven(BotError):
    """``/settings set`` with no option: nothing to store."""

    key = "error.no_default_given"
    template = "Choose at least one default to set. /settings show lists yours."


class NotYourHistory(BotError):
    """A /history page button clicked (or forged) by someone else."""

    key = "error.not_your_history"
    template = "Only the member whose history this is can turn its pages."


# --- /show: a result posted again --------------------------------------------------------------


class NotYourResult(BotError):
    """/show of a job that is not the member's own result in this server: unknown, someone
    else's, or another server's. One answer for all, so nothing about the job leaks."""

    key = "error.show_not_yours"
    template = "#{job_id} is not one of your results in this server."


class ShowQueued(BotError):
    key = "error.show_queued"
    template = (
        "#{job_id} is not made yet: it is still waiting in the queue. Your private status "
        "message under the request shows its place; the result is posted when it is done."
    )


class ShowRunning(BotError):
    key = "error.show_running"
    template = (
        "#{job_id} is being made right now (your private status message under the request "
        "shows how far it is); the result is posted when it is done."
    )


class ShowPosting(BotError):
    """Made, but its posting is not recorded yet (a moment, or a redelivery later)."""

    key = "error.show_posting"
    template = "#{job_id} is made and being posted in the channel it was asked in. Try again then."


class ShowFailed(BotError):
    key = "error.show_failed"
    template = "#{job_id} has no images to show: it failed. {reason}"


class ShowCancelled(BotError):
    key = "error.show_cancelled"
    template = "#{job_id} has no images to show: it was cancelled before it was made."


class ShowInterrupted(BotError):
    key = "error.show_interrupted"
    template = (
        "#{job_id} has no images to show: the bot restarted while making it, so nothing was "
        "made or charged. Its notice has a Retry button."
    )


class ShowDeleted(BotError):
    """The requester deleted the result (its Delete button): it is not brought back."""

    key = "error.show_deleted"
    template = "#{job_id} was deleted, so it cannot be shown again."


class ShowImagesGone(BotError):
    """The result's messages were deleted on Discord (not with Delete), or their files
    cannot be read: the bot keeps no copy of posted images."""

    key = "error.show_images_gone"
    template = (
        "#{job_id}'s result message was deleted, so its images are gone and it cannot be shown "
        "again. Ask for it again with the same prompt to make new ones."
    )


class ShowAgeRestricted(BotError):
    """Made under the server's low moderation of an age-restricted channel: shown only in one."""

    key = "error.show_age_restricted"
    template = (
        "#{job_id} was made in an age-restricted channel with relaxed moderation, so it can "
        "be shown only in an age-restricted channel."
    )
