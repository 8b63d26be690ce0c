"""Blocked terms: the operator's (``[moderation] blocked_terms``, every server) and each
server's own (``/moderation blocklist``), refused in prompts before anything is queued.

Prompts and terms are compared in one normalized form (:func:`normalize`): zero-width and other
invisible format characters removed (U+200B-U+200D, U+2060, U+FEFF, the soft hyphen, ...),
Unicode NFKC (full-width and compatibility forms become plain ones), case-folded, whitespace
collapsed. A term matches whole words in scripts that separate words (Latin, Cyrillic, Greek,
...: "cat" is not in "category"), and anywhere in scripts written without spaces (Han,
Hiragana, Katakana, Hangul, Thai, ...). ``*`` stands for any characters but a space, so
``cat*`` matches "category" and ``*cat`` "wildcat".

The matcher is not a backtracking regular expression: a member's prompt could make one take
seconds. Each piece between wildcards is found with ``str.find`` and the pieces are joined
right to left (:func:`matches`), in time roughly linear in the prompt per term.

Only this module writes ``blocked_terms``. Terms are stored normalized, so variants of one
term are one row. A server's terms are kept :data:`TERMS_SECONDS` after they are read (one
indexed query, not one per request: issue 10's hot path), and forgotten at once when its admins
change them (:meth:`Blocklist.forget`). Every interaction of a server reaches the one process
whose gateway has its shard, the /moderation commands included, so that process never checks a
prompt against old terms; another (a second gateway with other shards never sees the server's
requests) would hold them at most :data:`TERMS_SECONDS`.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Sessions
from bot.db.kept import Kept
from bot.db.models import BlockedTerm
from bot.errors import BotError, ConfigError
from bot.moderation.audit import audit_refusal

#: Longest term, in characters after normalizing.
MAX_TERM_CHARS = 100
#: Most terms one server may block.
MAX_TERMS = 200
WILDCARD = "*"
#: Seconds a server's terms are kept before they are read again.
TERMS_SECONDS = 5.0

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")
_WILDCARDS = re.compile(r"\*+")
#: Scripts written without spaces between words: a term in them matches anywhere.
_CONTINUOUS = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3040, 0x31FF),  # Hiragana, Katakana, Bopomofo, Hangul compatibility Jamo, ...
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)
_CONTINUOUS_STARTS = [low for low, _ in _CONTINUOUS]


class PromptBlocked(BotError):
    """Says that a term is blocked, never which (nor the list)."""

    key = "error.prompt_blocked"
    template = "That prompt contains a term this server doesn't allow. Please rephrase it."


class BlockedTermEmpty(BotError):
    key = "error.blocked_term_empty"
    template = "A blocked term needs at least one letter, number or sign besides * and spaces."


class BlockedTermTooLong(BotError):
    key = "error.blocked_term_too_long"
    template = "A blocked term can be at most {limit} characters long; that one has {length}."


class TooManyBlockedTerms(BotError):
    key = "error.too_many_blocked_terms"
    template = "This server already blocks {limit} terms, the most it can. Remove one first."


# --- normalizing and matching (pure) -----------------------------------------------------------


def normalize(text: str) -> str:
    """The form prompts and terms are compared in (see the module's docstring)."""
    if not text.isascii():
        # Before NFKC: a zero-width space between a letter and its accent must not keep them
        # apart. Every listed zero-width character and the soft hyphen are format (Cf).
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
        text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    else:
        text = text.lower()
    return _SPACES.sub(" ", text).strip()


def _continuous(char: str) -> bool:
    code = ord(char)
    at = bisect.bisect_right(_CONTINUOUS_STARTS, code) - 1
    return at >= 0 and code <= _CONTINUOUS[at][1]


def _in_word(char: str) -> bool:
    """Whether ``char`` continues a word of a script that separates words (letters, digits,
    ``_`` and combining marks; not Han, Kana, Hangul, Thai, ...)."""
    if char.isalnum() or char == "_":
        return not _continuous(char)
    return unicodedata.category(char).startswith("M")


@dataclass(frozen=True)
class Term:
    """A normalized term, split at its wildcards."""

    text: str
    #: The literal parts between wildcards, none empty.
    pieces: tuple[str, ...]
    #: No word boundary needed before (after) the match: a wildcard or a character of a
    #: script without spaces (or a sign) at that end.
    open_start: bool
    open_end: bool


def parse_term(raw: str) -> Term:
    """The term ``raw`` stands for; BotError when it cannot be one (empty, only wildcards,
    longer than :data:`MAX_TERM_CHARS`)."""
    text = _WILDCARDS.sub(WILDCARD, normalize(raw))
    if not text.replace(WILDCARD, "").strip():
        raise BlockedTermEmpty()
    if len(text) > MAX_TERM_CHARS:
        raise BlockedTermTooLong(limit=MAX_TERM_CHARS, length=len(text))
    parts = text.split(WILDCARD)
    pieces = tuple(part for part in parts if part)
    return Term(
        text=text,
        pieces=pieces,
        open_start=parts[0] == "" or not _in_word(pieces[0][0]),
        open_end=parts[-1] == "" or not _in_word(pieces[-1][-1]),
    )


@functools.lru_cache(maxsize=8192)
def _stored_term(text: str) -> Term | None:
    """A stored (already normalized) term; None for a row no rule would accept any more."""
    try:
        return parse_term(text)
    except BotError:
        return None


@dataclass
class Prompt:
    """A normalized prompt, with what the matcher finds in it kept for the next term."""

    text: str
    _found: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _starts: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _ends: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _spaces: list[int] | None = field(default=None, init=False, repr=False)

    @classmethod
    def of(cls, prompt: str) -> Prompt:
        return cls(normalize(prompt))

    def find(self, piece: str) -> list[int]:
        """Where ``piece`` starts in the prompt, overlaps included, ascending."""
        found = self._found.get(piece)
        if found is None:
            found, at = [], self.text.find(piece)
            while at >= 0:
                found.append(at)
                at = self.text.find(piece, at + 1)
            self._found[piece] = found
        return found

    def space_from(self, at: int) -> int:
        """The first space at or after ``at`` (the length of the prompt if none): how far a
        wildcard starting there may reach."""
        if self._spaces is None:
            self._spaces = [m.start() for m in re.finditer(" ", self.text)]
        index = bisect.bisect_left(self._spaces, at)
        return self._spaces[index] if index < len(self._spaces) else len(self.text)

    def word_starts(self, piece: str) -> list[int]:
        """Where ``piece`` starts a word (kept: many terms share a first piece)."""
        found = self._starts.get(piece)
        if found is None:
            found = self._starts[piece] = [at for at in self.find(piece) if self.starts_word(at)]
        return found

    def word_ends(self, piece: str) -> list[int]:
        """Where ``piece`` starts and a word ends after it (kept, as :meth:`word_starts`)."""
        found = self._ends.get(piece)
        if found is None:
            ends = [at for at in self.find(piece) if self.ends_word(at + len(piece))]
            found = self._ends[piece] = ends
        return found

    def starts_word(self, at: int) -> bool:
        return at == 0 or not _in_word(self.text[at - 1])

    def ends_word(self, at: int) -> bool:
        return at >= len(self.text) or not _in_word(self.text[at])


def matches(term: Term, prompt: Prompt) -> bool:
    """Whether ``term`` occurs in ``prompt``.

    Right to left: the places the last piece may start (a word ends after it, unless open),
    then those of each earlier piece from which a wildcard, spanning no space, reaches one of
    the later piece's places; the first piece's must start a word, unless open.
    """
    first, last = term.pieces[0], term.pieces[-1]
    if not term.open_start and not prompt.word_starts(first):
        return False  # cheap, and the costly case for a hostile prompt ("baaaa…")
    places = prompt.find(last) if term.open_end else prompt.word_ends(last)
    for piece in reversed(term.pieces[:-1]):
        if not places:
            return False
        later, places = places, []
        for at in prompt.find(piece):
            end = at + len(piece)
            index = bisect.bisect_left(later, end)
            if index < len(later) and later[index] <= prompt.space_from(end):
                places.append(at)
    return any(term.open_start or prompt.starts_word(at) for at in places)


def any_match(terms: Iterable[Term], prompt: str) -> bool:
    normalized = Prompt.of(prompt)
    return any(matches(term, normalized) for term in terms)


def operator_terms(raw: Sequence[str]) -> tuple[Term, ...]:
    """``[moderation] blocked_terms``, parsed; ConfigError names the key and the bad term, so
    a bad one stops the start (bot.app.build_catalogues)."""
    terms: dict[str, Term] = {}
    for entry in raw:
        try:
            term = parse_term(entry)
        except BotError as exc:
            raise ConfigError(f"moderation.blocked_terms: {entry!r}: {exc}") from None
        terms.setdefault(term.text, term)
    return tuple(terms.values())


# --- storage (the one writer of blocked_terms) ---------------------------------------------------


async def terms_of(sessions: Sessions, guild_id: int) -> list[str]:
    """The server's terms, normalized, in order."""
    async with sessions() as session:
        rows = await session.scalars(
            select(BlockedTerm.term)
            .where(BlockedTerm.guild_id == guild_id)
            .order_by(BlockedTerm.term)
        )
        return list(rows)


@dataclass(frozen=True)
class Change:
    #: The term as stored (normalized): what the admin is shown.
    term: str
    #: False: it was already there (add) or was not there (remove).
    changed: bool
    #: The server's terms after the change.
    count: int


async def add_term(sessions: Sessions, guild_id: int, raw: str, added_by: int) -> Change:
    """Block ``raw`` on the server; refused when it is no term or the server has
    :data:`MAX_TERMS` already. A variant of a listed term is that term (unchanged)."""
    term = parse_term(raw).text
    async with sessions() as session, session.begin():
        listed = await session.get(BlockedTerm, (guild_id, term))
        count = await _count(session, guild_id)
        if listed is not None:
            return Change(term, False, count)
        if count >= MAX_TERMS:
            raise TooManyBlockedTerms(limit=MAX_TERMS)
        session.add(BlockedTerm(guild_id=guild_id, term=term, added_by=added_by))
        try:
            await session.flush()
        except IntegrityError:  # the same term added by a concurrent command
            return Change(term, False, count)
    return Change(term, True, count + 1)


async def remove_term(sessions: Sessions, guild_id: int, raw: str) -> Change:
    """Stop blocking ``raw`` (or the listed term it is a variant of)."""
    term = _WILDCARDS.sub(WILDCARD, normalize(raw))
    async with sessions() as session, session.begin():
        result = await session.execute(
            delete(BlockedTerm).where(BlockedTerm.guild_id == guild_id, BlockedTerm.term == term)
        )
        removed = bool(getattr(result, "rowcount", 0))
        count = await _count(session, guild_id)
    return Change(term, removed, count)


async def _count(session: AsyncSession, guild_id: int) -> int:
    number = await session.scalar(
        select(func.count()).select_from(BlockedTerm).where(BlockedTerm.guild_id == guild_id)
    )
    return int(number or 0)


# --- the check every request passes ---------------------------------------------------------------


@dataclass(frozen=True)
class Blocklist:
    """The terms in force for a request: the operator's (parsed once, at start) and its
    server's (read when needed and kept :data:`TERMS_SECONDS`, parsed once)."""

    sessions: Sessions
    operator: tuple[Term, ...] = ()
    clock: Callable[[], float] = time.monotonic
    #: Each server's terms, parsed.
    _kept: Kept[int, tuple[Term, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kept", Kept(TERMS_SECONDS, clock=self.clock))

    @classmethod
    def build(cls, sessions: Sessions, blocked_terms: Sequence[str]) -> Blocklist:
        return cls(sessions, operator_terms(blocked_terms))

    async def blocked(self, guild_id: int | None, prompt: str) -> bool:
        if not prompt.strip():
            return False
        terms = list(self.operator)
        if guild_id is not None:
            terms += await self._server_terms(guild_id)
        return bool(terms) and any_match(terms, prompt)

    def forget(self, guild_id: int) -> None:
        """The server's terms changed (its admin command): read them again next time."""
        self._kept.forget(guild_id)

    async def _server_terms(self, guild_id: int) -> tuple[Term, ...]:
        return await self._kept.get(guild_id, functools.partial(self._read_terms, guild_id))

    async def _read_terms(self, guild_id: int) -> tuple[Term, ...]:
        stored = (_stored_term(text) for text in await terms_of(self.sessions, guild_id))
        return tuple(term for term in stored if term is not None)

    async def check(self, *, guild_id: int | None, user_id: int, command: str, prompt: str) -> None:
        """Raise PromptBlocked when a term in force is in ``prompt``, after noting the refusal
        for the server's audit channel (without the term: only that the blocklist refused)."""
        if not await self.blocked(guild_id, prompt):
            return
        try:
            await audit_refusal(
                self.sessions,
                guild_id=guild_id,
                user_id=user_id,
                command=command,
                prompt=prompt,
                reason="blocklist",
            )
        except (SQLAlchemyError, OSError) as exc:  # the entry is lost, the refusal stands
            log.warning("blocklist refusal not recorded for the audit channel: %s", exc)
        raise PromptBlocked()
