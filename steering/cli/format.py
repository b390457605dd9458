"""Plain-text layout for the ``steer`` command's output, and JSON any stdout can take.

Example:
    >>> print(side_by_side(["I love it"], ["I adore it"], ("unsteered", "steered"), width=30))
    # | unsteered   | steered
    --+-------------+------------
    1 | I love it   | I adore it
"""

import json
import shutil
import sys
import textwrap
from typing import Any, Optional, Sequence, TextIO

__all__ = ["side_by_side", "json_text", "print_json"]


def side_by_side(left: Sequence[str], right: Sequence[str], titles: tuple[str, str], width: Optional[int] = None) -> str:
    """Format two lists of texts as two wrapped columns, row by row.

    Args:
        left: The texts of the left column.
        right: The texts of the right column (paired with ``left`` row by row).
        titles: The two column headings.
        width: Total width in characters (default: the terminal's, at most 160).

    Returns:
        The table as one string (no trailing newline).

    Example:
        >>> print(side_by_side(["a b"], ["c"], ("unsteered", "steered"), width=30))
        # | unsteered   | steered
        --+-------------+------------
        1 | a b         | c
    """
    width = width or min(shutil.get_terminal_size((120, 20)).columns, 160)
    col = max(10, (width - 7) // 2)
    lines = [f"# | {titles[0]:<{col}} | {titles[1]}", f"--+-{'-' * col}-+-{'-' * col}"]
    for i, (a, b) in enumerate(zip(left, right), 1):
        wa = textwrap.wrap(" ".join(a.split()), col) or [""]
        wb = textwrap.wrap(" ".join(b.split()), col) or [""]
        for j in range(max(len(wa), len(wb))):
            num = str(i) if j == 0 else " "
            ca = wa[j] if j < len(wa) else ""
            cb = wb[j] if j < len(wb) else ""
            lines.append(f"{num} | {ca:<{col}} | {cb}".rstrip())
        if i < len(left):
            lines.append(f"  | {'':<{col}} |")
    return "\n".join(lines)


def json_text(obj: Any, encoding: Optional[str] = "utf-8", **kwargs: Any) -> str:
    """``obj`` as JSON, with non-ASCII characters as they are where ``encoding`` can write them.

    Where it cannot (``PYTHONIOENCODING=ascii``, a C locale), every non-ASCII character is a
    ``\\uXXXX`` escape instead: still valid JSON that reads back to the same strings (an error
    handler's look-alikes would change the data; a backslash escape like ``\\xfc`` would break
    the JSON). Values JSON has no type for (paths) are written as their ``str``.

    Args:
        obj: The value to write.
        encoding: The encoding of the stream the text goes to (``None``: UTF-8).
        **kwargs: Passed on to :func:`json.dumps` (``indent=2``).

    Example:
        >>> json_text({"c": "5 − 3"}), json_text({"c": "5 − 3"}, "ascii")
        ('{"c": "5 − 3"}', '{"c": "5 \\\\u2212 3"}')
    """
    text = json.dumps(obj, ensure_ascii=False, default=str, **kwargs)
    try:
        text.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(obj, ensure_ascii=True, default=str, **kwargs)
    return text


def print_json(obj: Any, file: Optional[TextIO] = None, **kwargs: Any) -> None:
    """Print ``obj`` as JSON to ``file`` (default stdout) in a form its encoding can write (:func:`json_text`).

    Example:
        >>> print_json({"name": "tiny", "layers": 2})
        {"name": "tiny", "layers": 2}
    """
    file = file or sys.stdout
    print(json_text(obj, getattr(file, "encoding", None), **kwargs), file=file)
