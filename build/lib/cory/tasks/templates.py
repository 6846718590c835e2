"""Prompt templates are checked when the config is built, not when the first prompt is formatted."""
from __future__ import annotations

import string

from cory.errors import UsageError


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def check_template(name: str, template: str, allowed: set[str], required: set[str], one_of: set[str] = frozenset()) -> set[str]:
    """The template's fields, after refusing a malformed template, an unknown field, or a missing one."""
    try:
        fields = template_fields(template)
    except ValueError as error:  # a lone '{' or '}'
        raise UsageError(f"{name} is not a valid template ({error}; write a literal brace as {{{{ or }}}})") from None
    if any(not f.isidentifier() for f in fields):  # an empty, positional or attribute field
        raise UsageError(f"{name} has a field that is not a name: {sorted(fields)}; write a literal brace as {{{{ or }}}}")
    unknown = fields - allowed
    if unknown:
        raise UsageError(f"{name} has unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - fields
    if missing:
        raise UsageError(f"{name} lacks field(s) {sorted('{' + f + '}' for f in missing)}")
    if one_of and not fields & one_of:
        raise UsageError(f"{name} needs one of the fields {sorted('{' + f + '}' for f in one_of)}")
    return fields


OBSERVER_FIELDS = {"query", "pioneer_response", "previous_responses"}
"""fields every observer template may use; a task may offer more (GSM8K: {question})"""
RESPONSE_FIELDS = {"response", "position"}
"""fields of the template that formats each earlier response inside {previous_responses}"""


def check_observer_template(template: str, task_fields: set[str], n_agents: int = 2) -> set[str]:
    """An observer template holds the earlier response(s) and the query (as tokens, or as a task's text field).
    {pioneer_response} is the response of the agent just before; with more than two agents the template must
    show every earlier one ({previous_responses})."""
    fields = check_template("observer_template", template, OBSERVER_FIELDS | task_fields, required=set(),
                            one_of={"query"} | task_fields)
    if n_agents > 2 and "previous_responses" not in fields:
        raise UsageError("observer_template lacks field {previous_responses}: with n_agents > 2 each observer sees "
                         "every earlier agent's response ({pioneer_response} holds only the one just before)")
    if not fields & {"pioneer_response", "previous_responses"}:
        raise UsageError("observer_template lacks field {pioneer_response} (or {previous_responses})")
    return fields


def chat_wrap(template: str, tokenizer) -> str:
    """`template` as one user turn of the tokenizer's chat template, ready for the assistant's answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("use_chat_template=True but the tokenizer has no chat template")
    marker = "\x00CORY\x00"
    wrapped = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True)
    before, after = wrapped.split(marker)
    escape = lambda s: s.replace("{", "{{").replace("}", "}}")  # noqa: E731  literal braces of the chat format
    return escape(before) + template + escape(after)
