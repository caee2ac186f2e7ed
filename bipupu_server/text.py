"""What "space" and "control character" mean for user-written text, said once for the server and its document.

Python's `str.strip()` and `\\s` and JSON Schema's `\\s` (ECMA-262) disagree on a few characters
(U+001C–U+001F and U+0085 are space to Python, U+FEFF to ECMA-262), so the rules name their
characters explicitly: the server trims exactly SPACE, and the regular expressions the OpenAPI
document publishes use the same explicit classes, which both engines read alike.
"""

from __future__ import annotations

import re
import unicodedata

# ECMA-262's WhiteSpace and LineTerminator: what `\s` means to a JSON Schema validator.
SPACE = ("\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
         "\u2028\u2029\u202f\u205f\u3000\ufeff")
SPACE_CLASS = r"\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f"  # Unicode category Cc


def trim(text: str) -> str:
    return text.strip(SPACE)


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


def trimmed_text_pattern(max_chars: int, *, controls: bool) -> str:
    """A regular expression for text of 1 to `max_chars` characters once SPACE is trimmed from both ends.

    With `controls=False` no control character may stand inside (the ends are trimmed anyway).
    """
    inner = "[^" + CONTROL_CLASS + "]" if not controls else r"[\s\S]"
    solid = "[^" + SPACE_CLASS + (CONTROL_CLASS if not controls else "") + "]"
    middle = f"(?:{inner}{{0,{max_chars - 2}}}{solid})?" if max_chars > 1 else ""
    return f"^[{SPACE_CLASS}]*{solid}{middle}[{SPACE_CLASS}]*$"


def anchored(pattern: re.Pattern[str] | str) -> str:
    """A pattern the domain uses with fullmatch, as the anchored text a JSON Schema `pattern` needs.

    Python's `$` also matches before a final newline, ECMA-262's does not; `(?!\\n)` makes them agree.
    """
    text = pattern if isinstance(pattern, str) else pattern.pattern
    return f"^(?:{text})$(?!\\n)"
