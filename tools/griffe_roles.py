"""A griffe extension for the docs site: agentstream's docstrings in Markdown.

The docstrings are written for people reading the source and for Sphinx-style
tools: ``:class:`~agentstream.models.TaskEvent``` roles and ``::`` before a
literal block. mkdocstrings renders Markdown, so each role becomes inline
code with the name it shows (the last part after a ``~``) and ``::`` a colon;
the indented block after it is a code block in Markdown already.
"""

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::\n")


def _role(match: "re.Match[str]") -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _ROLE.sub(_role, obj.docstring.value)
            obj.docstring.value = _LITERAL.sub(r"\1:\n", text)
