"""A password validator that refuses what is easy to guess, whatever its length.

Django's own validators count characters and look passwords up in a list; `aaaaaaaaaaaa` and
`qwertyuiopas` pass both. zxcvbn (Dropbox's estimator) models how guessers really work:
repeats, sequences, keyboard rows, dictionary words and names, dates, and the user's own details.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from zxcvbn import zxcvbn

# zxcvbn refuses longer input (its matching grows quickly with length); the first 72 characters
# already decide whether a password is guessable.
ZXCVBN_MAX_LENGTH = 72
USER_DETAILS = ("username", "first_name", "last_name", "email")


class GuessablePasswordValidator:
    """Refuses passwords whose zxcvbn score is below `min_score` (0-4; 3 = about 10^10 guesses)."""

    def __init__(self, min_score: int = 3) -> None:
        self.min_score = min_score

    def validate(self, password: str, user: Any = None) -> None:
        details = [str(getattr(user, name, "") or "") for name in USER_DETAILS]
        result = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[d for d in details if d])
        if result["score"] >= self.min_score:
            return
        feedback = result["feedback"]
        hint = " ".join(part for part in [feedback["warning"], *feedback["suggestions"]] if part)
        raise ValidationError(
            "This password is too easy to guess. %(hint)s",
            code="password_guessable",
            params={"hint": hint or "Use a few uncommon words, not one repeated or in keyboard order."},
        )

    def get_help_text(self) -> str:
        return (
            "Your password can't be easy to guess: no repeated characters, keyboard rows, sequences "
            "or names; a few uncommon words work well."
        )
