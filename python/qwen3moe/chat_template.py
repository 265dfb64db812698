"""Chat-template rendering with the same Jinja2 environment Hugging Face transformers uses.

Design: a GGUF file carries the model's Jinja chat template (`tokenizer.chat_template`).
transformers renders it in an ImmutableSandboxedEnvironment with trim_blocks and
lstrip_blocks, the loop-controls extension, a `{% generation %}` block tag, a `tojson` filter
that is plain `json.dumps` (ensure_ascii=False, no HTML escaping, keys not sorted), and the
globals `raise_exception` and `strftime_now`; it passes `messages`, `tools`, `documents`,
`add_generation_prompt` and the tokenizer's special-token strings. We do the same, so a
template renders to the identical string. Compiled templates are cached by source text.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ChatTemplateError", "render_chat_template"]


class ChatTemplateError(ValueError):
    """A chat template failed to compile or called raise_exception()."""


class _GenerationTag(jinja2.ext.Extension):
    # `{% generation %}...{% endgeneration %}` marks assistant text for HF's assistant-token
    # masks; for rendering it is transparent (its body is output unchanged).
    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return caller()


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"chat template does not compile: {e.message} (line {e.lineno})") from None
    except Exception as e:  # the template comes from the file (untrusted): any failure is its error
        raise ChatTemplateError(f"chat template does not compile: {type(e).__name__}: {e}") from None


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    **kwargs: Any,
) -> str:
    """Render `template` for `messages` as transformers' apply_chat_template(tokenize=False) does.

    Extra keyword arguments (bos_token, eos_token, enable_thinking, ...) become template
    variables. Errors raised by the template come out as ChatTemplateError (a ValueError).
    """
    if not isinstance(template, str):
        raise TypeError(f"chat template must be a str, got {type(template).__name__}")
    tpl = _compile(template)
    try:
        return tpl.render(
            messages=list(messages),
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template failed: {e}") from None
    except Exception as e:
        # Template code on bad data (e.g. `1 + 'a'`, None content, a missing attribute) raises
        # plain Python errors inside Jinja; the template is untrusted file data, so they are
        # reported as the template's failure (found by tests_py/fuzz/fuzz_chat_template.py).
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None
