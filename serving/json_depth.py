"""How deep a JSON text nests, counted in fixed-size slices without parsing it.

The request guard refuses bodies nesting deeper than it allows before any parser sees them
(serving/security.py). Removing the strings with a regular expression first, as it did, kept
one object per string of the body: a 10 MB patient record briefly took 128 MB and 0.45 s.
Here the text is read in slices of `SLICE_BYTES` with NumPy, carrying from one slice to the
next whether a string is open, how many backslashes end the slice and the depth, so memory
stays a few MB whatever the size (tests/serving/test_json_depth.py checks both agree).

Written by hand because no JSON library measures depth without building the document, and
building it is what deep nesting breaks. An invalid text is counted as it stands, which can
only turn one 400 into another.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SLICE_BYTES", "max_depth"]

SLICE_BYTES = 1 << 18
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def max_depth(text: bytes, *, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in `text` (0 for a scalar).

    Parameters
    ----------
    stop_above : int, optional
        Return as soon as the depth exceeds it.
    """
    data = np.frombuffer(text, dtype=np.uint8)
    in_string, backslashes, depth, deepest = 0, 0, 0, 0
    for start in range(0, len(data), SLICE_BYTES):
        chunk = data[start : start + SLICE_BYTES]
        escaped, backslashes = _escaped(chunk, backslashes)
        quotes = chunk == _QUOTE
        if escaped is not None:
            quotes &= ~escaped
        inside = (np.cumsum(quotes, dtype=np.int32) + in_string) & 1
        in_string = int(inside[-1])
        steps = _STEP[chunk]
        steps[inside == 1] = 0
        levels = np.cumsum(steps, dtype=np.int32) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        if stop_above is not None and deepest > stop_above:
            return deepest
    return deepest


def _escaped(chunk: np.ndarray, carried: int) -> tuple[np.ndarray | None, int]:
    """Which bytes follow an odd run of backslashes (None: none does), and the run of
    backslashes that ends the slice."""
    is_backslash = chunk == _BACKSLASH
    if not carried % 2 and not is_backslash.any():
        return None, 0
    positions = np.arange(len(chunk), dtype=np.int32)
    last_other = np.maximum.accumulate(np.where(is_backslash, -(carried + 1), positions))
    run_through = positions - last_other
    run_before = np.concatenate(([carried], run_through[:-1]))
    return run_before % 2 == 1, int(run_through[-1])
