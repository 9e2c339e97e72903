"""User and model text on the page is text, never markup: a question, an answer or a file name must not draw a form,
cover the page or fetch a remote image."""
import html
import re

# ":" too: a Markdown renderer turns "http://..." into a link (and shows backslashes inside it as typed).
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:])")


def html_text(text: str) -> str:
    """For components that insert HTML (the Chatbot does, sanitised, even with Markdown off)."""
    return html.escape(text, quote=False)


def markdown_text(text: str) -> str:
    """For gr.Markdown: HTML escaped, Markdown punctuation backslash-escaped, so it shows as typed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html_text(text))


def warning(message: str) -> str:
    """A status line saying what went wrong: the sign, then the message as text."""
    return f"⚠️ {markdown_text(message)}"
