"""Plain-text layout for the ``steer`` command's output.

Example:
    >>> print(side_by_side(["I love it"], ["I adore it"], ("unsteered", "steered"), width=30))
    # | unsteered   | steered
    --+-------------+------------
    1 | I love it   | I adore it
"""

import shutil
import textwrap
from typing import Optional, Sequence

__all__ = ["side_by_side"]


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
