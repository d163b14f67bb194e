"""Instruction data in any of the common layouts → one form: a list of `{role, content}` messages.

Layouts, told apart by their columns: `messages` (role/content lists), ShareGPT `conversations`
(from/value lists), `prompt`/`completion` (strings, or message lists as TRL writes them) and Alpaca
`instruction`/`input`/`output`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from finetune_kit.config.chat import ConversationFormat
from finetune_kit.errors import DataError

Message = dict[str, str]

# The columns each layout needs, in the order `auto` tries them.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "prompt-completion": ("prompt", "completion"),
    "alpaca": ("instruction", "output"),
}
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def detect_format(columns: Iterable[str], stated: ConversationFormat, where: str) -> str:
    """The stated layout, checked against the columns, or the first layout whose columns all exist."""
    present = set(columns)
    if stated != "auto":
        missing = [c for c in FORMAT_COLUMNS[stated] if c not in present]
        if missing:
            raise DataError(
                f"{where}: column '{missing[0]}' not found for data.conversation_format '{stated}'; "
                f"columns are: {', '.join(sorted(present))}"
            )
        return stated
    for layout, needed in FORMAT_COLUMNS.items():
        if all(c in present for c in needed):
            return layout
    layouts = "; ".join(f"{name}: {' + '.join(cols)}" for name, cols in FORMAT_COLUMNS.items())
    raise DataError(
        f"{where}: no instruction columns found (columns are: {', '.join(sorted(present))}); "
        f"give one of these layouts ({layouts})"
    )


def to_messages(row: dict[str, Any], layout: str, system_prompt: str | None, where: str) -> list[Message]:
    """One row as checked messages; `where` (file and row number) names the row in errors."""
    messages = _READERS[layout](row, where)
    if system_prompt and messages and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    check_messages(messages, where)
    return messages


def check_messages(messages: list[Message], where: str) -> None:
    """Known roles, text contents, and at least one assistant turn to learn from."""
    for turn, message in enumerate(messages, 1):
        if message["role"] not in ROLES:
            raise DataError(
                f"{where}: message {turn} has unknown role '{message['role']}'; roles are {', '.join(ROLES)}"
            )
        if not isinstance(message["content"], str):
            raise DataError(f"{where}: message {turn} content is not text")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant turn; every conversation needs at least one reply to learn from")


def _message_list(value: Any, role_key: str, content_key: str, where: str) -> list[Message]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise DataError(
            f"{where}: expected a list of {{{role_key}, {content_key}}} objects, got {type(value).__name__}"
        )
    for turn, message in enumerate(value, 1):
        missing = [key for key in (role_key, content_key) if key not in message]
        if missing:
            raise DataError(f"{where}: message {turn} has no '{missing[0]}' field")
    return [{"role": str(m[role_key]), "content": m[content_key]} for m in value]


def _messages(row: dict[str, Any], where: str) -> list[Message]:
    return _message_list(row["messages"], "role", "content", where)


def _sharegpt(row: dict[str, Any], where: str) -> list[Message]:
    turns = _message_list(row["conversations"], "from", "value", where)
    return [{"role": SHAREGPT_ROLES.get(t["role"], t["role"]), "content": t["content"]} for t in turns]


def _prompt_completion(row: dict[str, Any], where: str) -> list[Message]:
    def part(column: str, role: str) -> list[Message]:
        value = row[column]
        if isinstance(value, list):
            return _message_list(value, "role", "content", f"{where}, column '{column}'")
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column '{column}' is empty")
        return [{"role": role, "content": value}]

    return part("prompt", "user") + part("completion", "assistant")


def _alpaca(row: dict[str, Any], where: str) -> list[Message]:
    instruction, extra, output = row["instruction"], row.get("input") or "", row["output"]
    for column, value in (("instruction", instruction), ("output", output)):
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column '{column}' is empty")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


_READERS = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "prompt-completion": _prompt_completion,
    "alpaca": _alpaca,
}


def prompt_turns(value: Any, system: str | None, at: str) -> list[Message]:
    """A prompt's turns (text or messages), with `system` (data.system_prompt) first when it has no system turn."""
    prompt = as_turns(value, "user", f"{at}, prompt")
    if system and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    return prompt


def as_turns(value: Any, role: str, where: str) -> list[Message]:
    """A string is one message of `role`; a list of messages is kept. Empty is an error."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where} is empty")
        return [{"role": role, "content": value}]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in value)
    ):
        if not any(str(m["content"]).strip() for m in value):
            raise DataError(f"{where} is empty")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DataError(f"{where}: expected text or a list of {{role, content}} messages")
