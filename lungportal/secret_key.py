"""The secret key: refused in production when weak; in development, generated once per data
directory (never one key shared by every checkout)."""

from __future__ import annotations

import math
import os
import secrets
import string
import tempfile
import zlib
from pathlib import Path

MIN_LENGTH = 50
MIN_UNIQUE_CHARACTERS = 5
# The estimate below is deliberately pessimistic: random keys from the usual recipes score 200 to
# 400 (`secrets.token_hex(32)`, 256 bits, from about 200; `token_urlsafe(50)` above 300), while
# repeats, sequences and keys made of words score under 160 however long they are.
MIN_ENTROPY_BITS = 160
KNOWN_WEAK = ("changeme", "change-me", "django-insecure", "development-only", "your-secret-key")
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
# zxcvbn's matching grows quickly with length: longer keys are judged in pieces of this size.
_PIECE = 72


def weakness(key: str) -> str | None:
    """Why a key is too weak for production (Django's W009 rule, placeholders, and an entropy
    estimate that sees repeats, sequences and words), or None."""
    if len(key) < MIN_LENGTH:
        return f"it has {len(key)} characters; use at least {MIN_LENGTH}"
    if len(set(key)) < MIN_UNIQUE_CHARACTERS:
        return "it repeats too few characters"
    if any(word in key.lower() for word in KNOWN_WEAK):
        return "it contains a placeholder word"
    bits = estimated_bits(key)
    if bits < MIN_ENTROPY_BITS:
        return (
            f"it has about {bits:.0f} bits of entropy (repeats, sequences, keyboard runs or words); "
            f"use a random key of at least {MIN_ENTROPY_BITS} bits"
        )
    return None


def estimated_bits(key: str) -> float:
    """How many bits of entropy `key` has at most, as a guesser who knows patterns would count.

    The lower of two estimates: what zlib leaves of it (a repeated pattern compresses away), and
    the cheapest way to spell it out of zxcvbn's patterns (dictionary words, l33t, sequences,
    repeats, keyboard runs, dates), each at its guess count, and single characters drawn at
    random from the character classes the key uses."""
    per_character = math.log2(_alphabet_size(key))
    payload = len(zlib.compress(key.encode(), 9)) - len(zlib.compress(b"", 9))
    compressed = max(payload, 0) * per_character
    patterns = sum(_pattern_bits(key[i : i + _PIECE], per_character) for i in range(0, len(key), _PIECE))
    return min(compressed, patterns)


def _alphabet_size(key: str) -> int:
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    size = sum(len(chars) for chars in classes if any(c in chars for c in key))
    if any(not any(c in chars for chars in classes) for c in key):
        size += len(string.punctuation) + 1  # symbols and space
    return size


def _pattern_bits(piece: str, per_character: float) -> float:
    from zxcvbn import matching, scoring  # loads its word lists: only where a key is judged

    dictionaries = {
        name: ranks for name, ranks in matching.RANKED_DICTIONARIES.items() if name != "user_inputs"
    }
    ending: dict[int, list[tuple[int, float]]] = {}
    for match in matching.omnimatch(piece, dictionaries):
        guesses = float(scoring.estimate_guesses(match, piece))
        ending.setdefault(match["j"], []).append((match["i"], math.log2(max(guesses, 1.0))))
    cheapest = [0.0] * (len(piece) + 1)  # cheapest[n]: bits to spell the first n characters
    for j in range(len(piece)):
        cheapest[j + 1] = min(
            [cheapest[j] + per_character] + [cheapest[i] + bits for i, bits in ending.get(j, [])]
        )
    return cheapest[-1]


def development_key(data_dir: Path) -> str:
    """A random key kept in the data directory, readable by its owner only."""
    path = data_dir / "secret_key"
    if not path.exists():
        # Written whole under a private name, then linked into place: two processes starting at
        # once (web and worker) both read the first complete key, never a half-written file.
        fd, draft = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()
