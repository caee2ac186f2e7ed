"""The admin pages' one catalogue covers every word they show."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bipupu_server
from bipupu_server.web.admin import i18n

SOURCE = Path(bipupu_server.__file__).parent
# _("...") or _('...') in templates, the first argument only
TEMPLATE_CALL = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def template_messages() -> set[str]:
    found = set()
    for path in (SOURCE / "templates" / "admin").glob("*.html"):
        for double, single in TEMPLATE_CALL.findall(path.read_text()):
            found.add(double or single)
    return found


def code_messages() -> set[str]:
    """Literal arguments of i18n.gettext(...) in the admin pages' code."""
    found = set()
    for path in (SOURCE / "web" / "admin").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "gettext"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
    return found


def test_the_scan_finds_the_messages():
    assert {"Dashboard", "Log out", "Broadcast now"} <= template_messages()
    assert "Not found" in code_messages()


def test_every_message_has_its_chinese():
    missing = sorted((template_messages() | code_messages()) - set(i18n.ZH))
    assert missing == []


def test_every_translation_keeps_its_placeholders():
    for english, chinese in i18n.ZH.items():
        assert sorted(re.findall(r"%\(\w+\)s", english)) == sorted(re.findall(r"%\(\w+\)s", chinese)), english

