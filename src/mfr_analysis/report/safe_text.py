"""Data and option text made inert wherever a report shows it: HTML, Markdown and page checks.

Report pages show strings that a log or a user controls (site names, the title). Each one
passes through :func:`html_text` or :func:`markdown_text` at the point it is rendered, so no
such string can become markup, a link, an embedded file, math or a bidi layout trick.
:func:`unsafe_markup` is the last check on a finished page, and :data:`CONTENT_SECURITY_POLICY`
the policy every page carries (no script from anywhere, no network at all).
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

# What an offline report needs: its own inline <style> and style attributes, and images
# embedded as data: URLs (figures, and the icons of nbconvert's stylesheet). No script-src at
# all: scripts fall back to default-src 'none'. base-uri and form-action do not fall back to
# default-src, so they are closed explicitly.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'

# Files of the report folder a page may link to (relative, fixed names, never data text).
FOLDER_FILE_LINKS = frozenset({"data/quarantine.csv"})
DISPLAY_LIMIT = 200  # characters of one data string shown on a page (the rest becomes "…")

# Bidi embedding, override and isolate controls: they reorder the text around them on screen.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                                        "\u2066\u2067\u2068\u2069"))
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def plain_text(value: object, limit: int | None = DISPLAY_LIMIT) -> str:
    """One line of text: control characters become spaces, bidi controls go, long text is cut."""
    text = unicodedata.normalize("NFC", str(value)).translate(_BIDI_CONTROLS)
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Zl", "Zp"} else ch for ch in text)
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def html_text(value: object, limit: int | None = DISPLAY_LIMIT) -> str:
    """Text for an HTML element or a quoted attribute value: escaped, quotes included."""
    return html.escape(plain_text(value, limit), quote=True)


def markdown_text(value: object, limit: int | None = DISPLAY_LIMIT) -> str:
    """Text for a Markdown source: every ASCII punctuation character backslash-escaped.

    CommonMark lets any ASCII punctuation be escaped, so the text can open no tag, link,
    image, emphasis, code span or math (nbconvert's renderer passes raw HTML and
    ``javascript:`` links through, and embeds local files named by a Markdown image).
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", plain_text(value, limit))


def markdown_code(value: object, limit: int | None = DISPLAY_LIMIT) -> str:
    """Text as a Markdown code span: shown literally, in code style.

    The fence is one backtick longer than the longest run of backticks in the text, so the
    text cannot close it (CommonMark); a code span's content is never parsed, only escaped.
    (Raw ``<code>`` tags would not do: nbconvert, embedding images, re-parses each inline tag
    alone and empties it.)
    """
    text = plain_text(value, limit)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


class _MarkupAudit(HTMLParser):
    """Collects what would make a page active: scripts, handlers, script URLs, frames."""

    ACTIVE_TAGS = frozenset({"script", "iframe", "frame", "object", "embed", "applet", "base",
                             "form", "link", "svg", "math", "template", "portal"})
    URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href",
                                "srcset", "poster", "data", "background"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.policies: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta" and (dict(attrs).get("http-equiv") or "").lower() == \
                "content-security-policy":
            self.policies.append(dict(attrs).get("content") or "")
        if tag in self.ACTIVE_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            value = value or ""
            squeezed = re.sub(r"[\s\x00-\x1f]+", "", value).lower()
            if name.startswith("on"):
                self.problems.append(f"{name} attribute on <{tag}>")
            elif name in self.URL_ATTRIBUTES and not _inert_url(tag, name, squeezed):
                self.problems.append(f"{name}={squeezed[:40]!r} on <{tag}>")
            elif tag == "meta" and name == "http-equiv" and squeezed not in {
                    "content-security-policy", "content-type"}:
                self.problems.append(f"meta http-equiv={squeezed!r}")

    handle_startendtag = handle_starttag


def _inert_url(tag: str, name: str, url: str) -> bool:
    """Images may be embedded PNG/JPEG data; links may point within the page, to a sibling
    report page of the same folder, or to the folder's quarantine file (the data-quality
    page's link for the analyst); nothing else."""
    if tag == "img" and name == "src":
        return url.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
    if tag == "a" and name == "href":
        return (url.startswith("#") or url in FOLDER_FILE_LINKS
                or re.fullmatch(r"[a-z0-9_.-]+\.html(#[\w-]*)?", url) is not None)
    return False


def unsafe_markup(page: str) -> list[str]:
    """What in a finished page could run or fetch something; empty when the page is inert."""
    audit = _MarkupAudit()
    audit.feed(page)
    audit.close()
    if audit.policies != [CONTENT_SECURITY_POLICY]:
        audit.problems.append("not exactly one Content-Security-Policy meta element, ours")
    return audit.problems
