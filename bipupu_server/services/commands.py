"""What a card to a service asks for, and the words of the service's answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ..errors import Invalid

ACTIONS = ("subscribe", "unsubscribe", "help")
WORD_MAX = 20
WORDS_MAX = 20
# The words a new service answers to. schema.sql and the migrations seed the built-in services with the
# same words, as SQL text; tests/test_services.py keeps those copies equal to this.
DEFAULT_WORDS = {"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"],
                 "help": ["?", "HELP", "帮助"]}
REPLY_PATTERN = {"led_color": "#B57EDC", "effect": "breathe", "font": "default", "duration_s": 8}


def check_commands(raw: Any) -> str:
    """Admin-edited command words: {"subscribe": [...], "unsubscribe": [...], "help": [...]} → JSON text."""
    if not isinstance(raw, dict) or set(raw) - set(ACTIONS):
        raise Invalid(f"commands must be an object with the keys {', '.join(ACTIONS)}", field="commands")
    seen: dict[str, str] = {}
    commands: dict[str, list[str]] = {}
    for action in ACTIONS:
        words = raw.get(action, [])
        if not isinstance(words, list) or len(words) > WORDS_MAX:
            raise Invalid(f"commands.{action} must be a list of at most {WORDS_MAX} words", field=f"commands.{action}")
        clean = []
        for word in words:
            if not isinstance(word, str) or not 1 <= len(word.strip()) <= WORD_MAX:
                raise Invalid(f"each word in commands.{action} must be 1 to {WORD_MAX} characters",
                              field=f"commands.{action}")
            key = word.strip().casefold()
            if seen.get(key, action) != action:
                raise Invalid(f"{word!r} cannot mean both {seen[key]} and {action}", field=f"commands.{action}")
            seen[key] = action
            clean.append(word.strip())
        commands[action] = clean
    return orjson.dumps(commands).decode()


def action_for(commands_json: str, text: str) -> str:
    """The action a card asks for (case-insensitive, trimmed); anything unknown asks for help."""
    wanted = text.strip().casefold()
    for action, words in orjson.loads(commands_json).items():
        if any(wanted == word.casefold() for word in words):
            return action
    return "help"


def _words(service: dict[str, Any], action: str) -> str:
    return " / ".join(orjson.loads(service["commands"]).get(action, [])) or "—"


def help_text(service: dict[str, Any], zone_name: str) -> str:
    lines = [f"「{service['name']}」{service['description']}"]
    if service["kind"] == "notice":
        lines.append("它会发给每一位用户，无需订阅。")
    else:
        lines.append(f"每天 {service['send_time']}（{zone_name}）送达。")
        lines.append(f"订阅：{_words(service, 'subscribe')}")
        lines.append(f"退订：{_words(service, 'unsubscribe')}")
    lines.append(f"帮助：{_words(service, 'help')}")
    return "\n".join(lines)


def reply_text(service: dict[str, Any], action: str, changed: bool, first: datetime | None, zone_name: str) -> str:
    """The service's answer to a command; `changed` says whether the subscription changed."""
    name = service["name"]
    if action == "help":
        return help_text(service, zone_name)
    if service["kind"] == "notice":
        return f"「{name}」会发给每一位用户，无需订阅或退订。"
    if action == "subscribe":
        if not changed:
            return f"你已经订阅了「{name}」，每天 {service['send_time']}（{zone_name}）见。"
        when = f"{first.month}月{first.day}日 {first:%H:%M}" if first else service["send_time"]
        return (f"订阅成功！「{name}」每天 {service['send_time']}（{zone_name}）送达，"
                f"第一份将在 {when} 到来。退订请发送 {_words(service, 'unsubscribe')}。")
    if not changed:
        return f"你还没有订阅「{name}」。想订阅请发送 {_words(service, 'subscribe')}。"
    return f"已退订「{name}」。想回来时发送 {_words(service, 'subscribe')} 即可。"
