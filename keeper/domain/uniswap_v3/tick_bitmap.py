"""TickBitmap: one bit per tick spacing, 256 per word; where the next initialized tick is.

A swap step ends at the next initialized tick *or at the end of the current word*: those extra
stops split a step in two, which changes the rounding, so a quote must stop where the pool does.
"""

from __future__ import annotations

from collections.abc import Mapping

from keeper.domain.amm import SwapRevert


class TickWindowExceeded(SwapRevert):
    """The swap reaches a bitmap word the snapshot did not read: its result is unknown here."""


def compress(tick: int, tick_spacing: int) -> int:
    """The tick in units of the spacing, rounded toward negative infinity."""
    return tick // tick_spacing


def position(compressed: int) -> tuple[int, int]:
    """(word, bit) of a compressed tick: word = compressed >> 8, bit = compressed mod 256."""
    return compressed >> 8, compressed & 0xFF


def word_of_tick(tick: int, tick_spacing: int) -> int:
    return position(compress(tick, tick_spacing))[0]


def next_initialized_tick_within_one_word(
    words: Mapping[int, int], tick: int, tick_spacing: int, lte: bool
) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord over the words of a snapshot.

    With ``lte`` the nearest initialized tick at or below ``tick`` in its word (else the
    word's first tick); without, the nearest above ``tick`` (else the word's last tick).
    Raises TickWindowExceeded when the word is not in ``words``.
    """
    compressed = compress(tick, tick_spacing)
    if lte:
        word_pos, bit_pos = position(compressed)
        word = _word(words, word_pos)
        masked = word & ((1 << (bit_pos + 1)) - 1)
        if masked:
            return (compressed - (bit_pos - (masked.bit_length() - 1))) * tick_spacing, True
        return (compressed - bit_pos) * tick_spacing, False
    word_pos, bit_pos = position(compressed + 1)
    word = _word(words, word_pos)
    masked = word & ~((1 << bit_pos) - 1)
    if masked:
        lowest = (masked & -masked).bit_length() - 1
        return (compressed + 1 + (lowest - bit_pos)) * tick_spacing, True
    return (compressed + 1 + (255 - bit_pos)) * tick_spacing, False


def _word(words: Mapping[int, int], word_pos: int) -> int:
    try:
        return words[word_pos]
    except KeyError:
        raise TickWindowExceeded(f"tick bitmap word {word_pos} is outside the snapshot") from None


def initialized_ticks(word_pos: int, word: int, tick_spacing: int) -> list[int]:
    """The ticks whose bits are set in one bitmap word, ascending."""
    out: list[int] = []
    while word:
        low = word & -word
        out.append(((word_pos << 8) + low.bit_length() - 1) * tick_spacing)
        word ^= low
    return out
