"""Block Kit limits, and a checker for the subset of Block Kit waguard uses (pure).

The numbers are Slack's published limits (Block Kit reference, also encoded in `@slack/types`).
`problems` answers the way Slack does for `invalid_blocks`: one message per problem, each ending in a
JSON pointer. The Slack simulator uses it so a message Slack would refuse is refused in drills too;
blocks.py's tests use it as a second check on what the builders emit.
"""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
BLOCK_ID = 255
HEADER_TEXT = 150
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
ACTION_ID = 255
BUTTON_VALUE = 2000
BUTTON_URL = 3000
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
MESSAGE_TEXT = 40000

_BLOCK_TYPES = frozenset({
    "section", "header", "context", "actions", "divider", "image", "rich_text", "input",
})
_BUTTON_STYLES = frozenset({"primary", "danger"})


def problems(blocks: object) -> list[str]:
    """Every limit `blocks` breaks, as Slack-style messages; an empty list means acceptable.

    Only the block and element types waguard emits are checked in depth; other known block types
    are accepted as they are.
    """
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    out: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        out.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            out.append(f"must provide a known block type [json-pointer:{at}/type]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not 0 < len(block_id) <= BLOCK_ID:
                out.append(f"must be 1 to {BLOCK_ID} characters [json-pointer:{at}/block_id]")
            elif block_id in block_ids:
                out.append(f"block_id must be unique in a message [json-pointer:{at}/block_id]")
            else:
                block_ids.add(block_id)
        kind = block["type"]
        if kind == "header":
            out += _text(block.get("text"), f"{at}/text", HEADER_TEXT, plain_only=True)
        elif kind == "section":
            out += _section(block, at)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 0 < len(elements) <= CONTEXT_ELEMENTS:
                out.append(f"must have 1 to {CONTEXT_ELEMENTS} elements [json-pointer:{at}/elements]")
            else:
                for j, el in enumerate(elements):
                    out += _text(el, f"{at}/elements/{j}", CONTEXT_TEXT)
        elif kind == "actions":
            out += _actions(block, at, action_ids)
    return out


def _text(obj: object, at: str, limit: int, *, plain_only: bool = False) -> list[str]:
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        kinds = "plain_text" if plain_only else "plain_text or mrkdwn"
        return [f"must be a {kinds} text object [json-pointer:{at}]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be a non-empty string [json-pointer:{at}/text]"]
    if len(text) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{at}/text]"]
    return []


def _section(block: dict[str, Any], at: str) -> list[str]:
    out: list[str] = []
    text, fields = block.get("text"), block.get("fields")
    if text is None and fields is None:
        return [f"must provide either text or fields [json-pointer:{at}]"]
    if text is not None:
        out += _text(text, f"{at}/text", SECTION_TEXT)
    if fields is not None:
        if not isinstance(fields, list) or not 0 < len(fields) <= SECTION_FIELDS:
            return out + [f"must have 1 to {SECTION_FIELDS} fields [json-pointer:{at}/fields]"]
        for j, field in enumerate(fields):
            out += _text(field, f"{at}/fields/{j}", FIELD_TEXT)
    return out


def _actions(block: dict[str, Any], at: str, action_ids: set[str]) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 0 < len(elements) <= ACTIONS_ELEMENTS:
        return [f"must have 1 to {ACTIONS_ELEMENTS} elements [json-pointer:{at}/elements]"]
    out: list[str] = []
    for j, el in enumerate(elements):
        here = f"{at}/elements/{j}"
        if not isinstance(el, dict) or el.get("type") != "button":
            continue  # waguard emits buttons only; other elements are not checked here
        out += _text(el.get("text"), f"{here}/text", BUTTON_TEXT, plain_only=True)
        action_id = el.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or not 0 < len(action_id) <= ACTION_ID:
                out.append(f"must be 1 to {ACTION_ID} characters [json-pointer:{here}/action_id]")
            elif action_id in action_ids:
                out.append(f"action_id must be unique in a message [json-pointer:{here}/action_id]")
            else:
                action_ids.add(action_id)
        value = el.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > BUTTON_VALUE):
            out.append(f"must be a string of at most {BUTTON_VALUE} characters [json-pointer:{here}/value]")
        url = el.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > BUTTON_URL):
            out.append(f"must be a string of at most {BUTTON_URL} characters [json-pointer:{here}/url]")
        style = el.get("style")
        if style is not None and style not in _BUTTON_STYLES:
            out.append(f"must be one of primary, danger [json-pointer:{here}/style]")
        confirm = el.get("confirm")
        if confirm is not None:
            out += _confirm(confirm, f"{here}/confirm")
    return out


def _confirm(confirm: object, at: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [f"must be a confirmation dialog object [json-pointer:{at}]"]
    out = _text(confirm.get("title"), f"{at}/title", CONFIRM_TITLE, plain_only=True)
    out += _text(confirm.get("text"), f"{at}/text", CONFIRM_TEXT)
    out += _text(confirm.get("confirm"), f"{at}/confirm", CONFIRM_BUTTON, plain_only=True)
    out += _text(confirm.get("deny"), f"{at}/deny", CONFIRM_BUTTON, plain_only=True)
    style = confirm.get("style")
    if style is not None and style not in _BUTTON_STYLES:
        out.append(f"must be one of primary, danger [json-pointer:{at}/style]")
    return out
