"""atheris (libFuzzer for Python) target: chat-template rendering on arbitrary input.

Input bytes: the first byte picks the mode, the rest is the payload.
  * messages (modes 0-2): the payload becomes a chat (roles, contents, tool calls, a tools
    list, enable_thinking) built with atheris' FuzzedDataProvider and is rendered with the
    real Qwen3 template (tokenizer_config.json fixture, when present), the builtin template and
    the Qwen3-Coder-style template of the tests. Result: a str, or ChatTemplateError (a
    ValueError: the template's own raise_exception, e.g. for an unknown role); each message's
    content must appear in the rendering when the render succeeds (Qwen-style templates
    copy contents verbatim, apart from the thinking split of assistant turns).
  * template source (mode 3): the payload is the template text itself (it comes from the
    GGUF file, i.e. untrusted): rendering must give a str or ChatTemplateError - never
    another exception, never a sandbox escape (the environment is immutable and sandboxed).
Any other exception is a crash (atheris reports it with the input).

    bench/fuzz.sh chat 60
"""
from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import qwen3moe.tokenizer  # noqa: F401  (instrumented)
    from _fuzz_common import load_tokenizer, say
    from qwen3moe.chat_template import ChatTemplateError, render_chat_template
    from qwen3moe.hf_tokenizer import BUILTIN_CHAT_TEMPLATE

TOK, KIND = load_tokenizer()
TEMPLATES = [("builtin", BUILTIN_CHAT_TEMPLATE)]
if TOK.chat_template:
    TEMPLATES.insert(0, (KIND, TOK.chat_template))
ROLES = ["system", "user", "assistant", "tool", "developer", "", "bad"]


def make_chat(fdp: "atheris.FuzzedDataProvider") -> tuple[list[dict], dict]:
    msgs: list[dict] = []
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        m: dict = {"role": ROLES[fdp.ConsumeIntInRange(0, len(ROLES) - 1)],
                   "content": fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64))}
        if m["role"] == "assistant" and fdp.ConsumeBool():
            m["reasoning_content"] = fdp.ConsumeUnicodeNoSurrogates(16)
        if m["role"] == "assistant" and fdp.ConsumeBool():
            m["tool_calls"] = [{"type": "function", "function": {
                "name": fdp.ConsumeUnicodeNoSurrogates(8),
                "arguments": {fdp.ConsumeUnicodeNoSurrogates(4): fdp.ConsumeIntInRange(-9, 9)}
                if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(12)}}]
        if fdp.ConsumeIntInRange(0, 15) == 0:
            m["content"] = None if fdp.ConsumeBool() else [{"type": "text", "text": "x"}]
        msgs.append(m)
    kw: dict = {"add_generation_prompt": fdp.ConsumeBool()}
    if fdp.ConsumeBool():
        kw["enable_thinking"] = fdp.ConsumeBool()
    if fdp.ConsumeBool():
        kw["tools"] = [{"type": "function", "function": {"name": fdp.ConsumeUnicodeNoSurrogates(8),
                                                          "description": fdp.ConsumeUnicodeNoSurrogates(16),
                                                          "parameters": {"type": "object", "properties": {}}}}]
    return msgs, kw


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, payload = data[0] % 4, data[1:]
    if mode < 3:
        fdp = atheris.FuzzedDataProvider(payload)
        msgs, kw = make_chat(fdp)
        for _, tpl in TEMPLATES:
            try:
                out = render_chat_template(tpl, msgs, **kw)
            except ChatTemplateError:
                continue
            assert isinstance(out, str)
            for m in msgs:
                c = m.get("content")
                if isinstance(c, str) and m["role"] in ("user", "system") and c.strip() == c and c:
                    assert c in out, (m, out)
    else:
        src = payload.decode("utf-8", "replace")[:512]
        try:
            out = render_chat_template(src, [{"role": "user", "content": "hi"}])
        except ChatTemplateError:
            return
        assert isinstance(out, str)


def main() -> None:
    say(f"chat-template fuzz target: templates {[n for n, _ in TEMPLATES]}")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
