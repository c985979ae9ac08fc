"""Bytewords (BCR-2020-012): bytes as four-letter English words, with a CRC-32 suffix.

UR text carries its CBOR as Bytewords so that a QR code can use alphanumeric mode and a
person can read a payload aloud. Every encoding appends the big-endian CRC-32 of the body,
so a mistyped or misread word is caught here, before the CBOR layer ever sees the bytes.
The word list is embedded (256 words, index = byte value) rather than read from a file
because ``shared/`` does no I/O; a conformance test checks it against the official list.
"""

from __future__ import annotations

import zlib
from enum import StrEnum

__all__ = ["WORDS", "BytewordsError", "Style", "decode", "encode"]


class BytewordsError(ValueError):
    """Text that is not valid Bytewords: unknown word, bad checksum, or too short."""


class Style(StrEnum):
    """The three spellings: words separated by spaces or hyphens, or two letters a byte."""

    STANDARD = "standard"
    URI = "uri"
    MINIMAL = "minimal"


#: The 256 words; ``WORDS[b]`` spells the byte ``b``.
WORDS: tuple[str, ...] = (
    "able",
    "acid",
    "also",
    "apex",
    "aqua",
    "arch",
    "atom",
    "aunt",
    "away",
    "axis",
    "back",
    "bald",
    "barn",
    "belt",
    "beta",
    "bias",
    "blue",
    "body",
    "brag",
    "brew",
    "bulb",
    "buzz",
    "calm",
    "cash",
    "cats",
    "chef",
    "city",
    "claw",
    "code",
    "cola",
    "cook",
    "cost",
    "crux",
    "curl",
    "cusp",
    "cyan",
    "dark",
    "data",
    "days",
    "deli",
    "dice",
    "diet",
    "door",
    "down",
    "draw",
    "drop",
    "drum",
    "dull",
    "duty",
    "each",
    "easy",
    "echo",
    "edge",
    "epic",
    "even",
    "exam",
    "exit",
    "eyes",
    "fact",
    "fair",
    "fern",
    "figs",
    "film",
    "fish",
    "fizz",
    "flap",
    "flew",
    "flux",
    "foxy",
    "free",
    "frog",
    "fuel",
    "fund",
    "gala",
    "game",
    "gear",
    "gems",
    "gift",
    "girl",
    "glow",
    "good",
    "gray",
    "grim",
    "guru",
    "gush",
    "gyro",
    "half",
    "hang",
    "hard",
    "hawk",
    "heat",
    "help",
    "high",
    "hill",
    "holy",
    "hope",
    "horn",
    "huts",
    "iced",
    "idea",
    "idle",
    "inch",
    "inky",
    "into",
    "iris",
    "iron",
    "item",
    "jade",
    "jazz",
    "join",
    "jolt",
    "jowl",
    "judo",
    "jugs",
    "jump",
    "junk",
    "jury",
    "keep",
    "keno",
    "kept",
    "keys",
    "kick",
    "kiln",
    "king",
    "kite",
    "kiwi",
    "knob",
    "lamb",
    "lava",
    "lazy",
    "leaf",
    "legs",
    "liar",
    "limp",
    "lion",
    "list",
    "logo",
    "loud",
    "love",
    "luau",
    "luck",
    "lung",
    "main",
    "many",
    "math",
    "maze",
    "memo",
    "menu",
    "meow",
    "mild",
    "mint",
    "miss",
    "monk",
    "nail",
    "navy",
    "need",
    "news",
    "next",
    "noon",
    "note",
    "numb",
    "obey",
    "oboe",
    "omit",
    "onyx",
    "open",
    "oval",
    "owls",
    "paid",
    "part",
    "peck",
    "play",
    "plus",
    "poem",
    "pool",
    "pose",
    "puff",
    "puma",
    "purr",
    "quad",
    "quiz",
    "race",
    "ramp",
    "real",
    "redo",
    "rich",
    "road",
    "rock",
    "roof",
    "ruby",
    "ruin",
    "runs",
    "rust",
    "safe",
    "saga",
    "scar",
    "sets",
    "silk",
    "skew",
    "slot",
    "soap",
    "solo",
    "song",
    "stub",
    "surf",
    "swan",
    "taco",
    "task",
    "taxi",
    "tent",
    "tied",
    "time",
    "tiny",
    "toil",
    "tomb",
    "toys",
    "trip",
    "tuna",
    "twin",
    "ugly",
    "undo",
    "unit",
    "urge",
    "user",
    "vast",
    "very",
    "veto",
    "vial",
    "vibe",
    "view",
    "visa",
    "void",
    "vows",
    "wall",
    "wand",
    "warm",
    "wasp",
    "wave",
    "waxy",
    "webs",
    "what",
    "when",
    "whiz",
    "wolf",
    "work",
    "yank",
    "yawn",
    "yell",
    "yoga",
    "yurt",
    "zaps",
    "zero",
    "zest",
    "zinc",
    "zone",
    "zoom",
)

_CHECKSUM_LEN = 4
_SEPARATORS = {Style.STANDARD: " ", Style.URI: "-"}
_BY_WORD = {word: value for value, word in enumerate(WORDS)}
_BY_PAIR = {word[0] + word[3]: value for value, word in enumerate(WORDS)}
_MINIMAL = tuple(word[0] + word[3] for word in WORDS)


def encode(data: bytes, style: Style | str = Style.MINIMAL) -> str:
    """Encode ``data`` followed by its CRC-32 (big-endian), lower case."""
    style = Style(style)
    body = bytes(data) + zlib.crc32(data).to_bytes(_CHECKSUM_LEN, "big")
    if style is Style.MINIMAL:
        return "".join(_MINIMAL[b] for b in body)
    return _SEPARATORS[style].join(WORDS[b] for b in body)


def decode(text: str, style: Style | str = Style.MINIMAL) -> bytes:
    """Decode Bytewords in ``style`` (any letter case), check and strip the CRC-32."""
    style = Style(style)
    text = text.strip().lower()
    raw = _decode_minimal(text) if style is Style.MINIMAL else _decode_words(text, style)
    return _strip_checksum(raw)


def _decode_words(text: str, style: Style) -> bytes:
    words = text.split(_SEPARATORS[style]) if text else []
    out = bytearray()
    for position, word in enumerate(words):
        value = _BY_WORD.get(word)
        if value is None:
            raise BytewordsError(f"not a byteword: {word[:16]!r} at word {position}")
        out.append(value)
    return bytes(out)


def _decode_minimal(text: str) -> bytes:
    if len(text) % 2:
        raise BytewordsError(f"minimal Bytewords need an even number of letters, got {len(text)}")
    out = bytearray()
    for position in range(0, len(text), 2):
        value = _BY_PAIR.get(text[position : position + 2])
        if value is None:
            pair = text[position : position + 2]
            raise BytewordsError(f"not a minimal byteword: {pair!r} at letter {position}")
        out.append(value)
    return bytes(out)


def _strip_checksum(raw: bytes) -> bytes:
    if len(raw) <= _CHECKSUM_LEN:
        raise BytewordsError(
            f"Bytewords too short: {len(raw)} bytes, need at least one byte and a 4-byte checksum"
        )
    body, checksum = raw[:-_CHECKSUM_LEN], raw[-_CHECKSUM_LEN:]
    expected = zlib.crc32(body).to_bytes(_CHECKSUM_LEN, "big")
    if checksum != expected:
        raise BytewordsError(
            f"Bytewords checksum mismatch: got {checksum.hex()}, computed {expected.hex()}"
        )
    return body
