"""User text (plan titles, method labels, mask-folder names, dataset options) inside rendered tables.

One owner for the two escapes the tables need: :func:`latex` for text written into LaTeX outside tabulate's
cells (captions; tabulate's ``latex_booktabs`` escapes the cells itself) and :func:`markdown` for text in
Markdown tables and titles, where raw HTML would otherwise reach the page that renders them.
"""

from __future__ import annotations

_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_MARKDOWN = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": r"\|"}


def latex(text: object) -> str:
    """``text`` with LaTeX's special characters (``& % $ # _ { } ~ ^ \\``) made literal."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def markdown(text: object) -> str:
    """``text`` safe in a Markdown table or title: no raw HTML (``< > &`` as entities), no cell break (``|``)."""
    return "".join(_MARKDOWN.get(ch, ch) for ch in str(text))
