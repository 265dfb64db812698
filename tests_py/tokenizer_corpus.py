"""Deterministic tokenizer test corpus (>= 500 strings) for oracle comparisons.

Hand-written cases cover the places where byte-level BPE tokenizers differ: code in several
languages, whitespace runs, \\r\\n, contractions (any case), digits, emoji (ZWJ, flags,
keycaps, skin tones), CJK, Cyrillic, Arabic, Hebrew, Devanagari, Thai, composed vs decomposed
accents (NFC), control characters, U+FFFD, non-characters, special-token text; then seeded
random mixtures of all of those. `build_corpus()` always returns the same list.
"""
from __future__ import annotations

import random

CODE = [
    # Python
    "def add(a, b):\n    return a + b\n",
    "import numpy as np\nx = np.zeros((4, 8), dtype=np.float32)\nprint(x.shape)",
    "class Foo(Bar):\n\tdef __init__(self):\n\t\tsuper().__init__()\n\t\tself._x = {'k': [1, 2, 3]}\n",
    "if __name__ == '__main__':\n    main()\n",
    "result = [i ** 2 for i in range(10) if i % 3 != 0]  # squares\n",
    "async def fetch(url: str) -> bytes:\n    async with session.get(url) as r:\n        return await r.read()\n",
    "@dataclass(frozen=True)\nclass Point:\n    x: float = 0.0\n    y: float = 0.0\n",
    "lambda x, *args, **kwargs: (x, args, kwargs)",
    "s = f\"{name!r:>10} = {value:.3e}\"\n",
    "try:\n    pass\nexcept (ValueError, KeyError) as e:\n    raise RuntimeError('bad') from e\n",
    '"""Docstring with "quotes" and \'apostrophes\'."""',
    "x = 0xFF_FF; y = 0b1010; z = 1_000_000; w = 3.14e-10j",
    # C
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "static inline float canon_fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }",
    "for (size_t i = 0; i < n; ++i) { out[i] = in[i] * scale; }",
    "typedef struct { uint8_t qs[32]; ggml_half d; } block_q4_0;",
    "#define MAX(a,b) ((a)>(b)?(a):(b))\n#ifdef __AVX2__\n#endif",
    "ptr->next = NULL; /* end of list */ // comment",
    # Rust
    "fn main() {\n    let v: Vec<i32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "impl<'a, T: Clone + 'a> Iterator for Iter<'a, T> { type Item = &'a T; }",
    "match x { Some(ref y) => y.len(), None => 0 }",
    "#[derive(Debug, Clone, PartialEq)]\npub struct Token<'s> { text: &'s str }",
    "let s = r#\"raw \"string\" here\"#; let b = b'a'; let c = '\\u{1F600}';",
    # JavaScript / TypeScript
    "const f = async (x) => { await sleep(10); return x?.y ?? 'default'; };",
    "export default function App() {\n  return <div className=\"app\">{items.map(i => <Item key={i.id} />)}</div>;\n}",
    "let re = /^[a-z]+\\d*$/gi; console.log(`template ${re.source}`);",
    "interface User { id: number; name?: string; tags: Array<string> }",
    "document.querySelectorAll('.x').forEach((el) => el.remove());",
    "x === undefined || y !== null && z >>>= 2;",
    # SQL
    "SELECT u.id, COUNT(*) AS n FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 100 GROUP BY u.id;",
    "INSERT INTO t (a, b) VALUES (1, 'it''s'), (2, NULL);",
    "CREATE TABLE IF NOT EXISTS logs (id INTEGER PRIMARY KEY, msg TEXT NOT NULL DEFAULT '');",
    "select * from T where name like '%abc_' order by 1 desc limit 10 offset 20",
    "UPDATE accounts SET balance = balance - 50.25 WHERE id = 7; -- transfer",
    # shell
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "find . -name '*.py' -print0 | xargs -0 grep -n 'TODO' 2>/dev/null || true",
    "export PATH=\"$HOME/.local/bin:$PATH\" && cd ~/src && make -j$(nproc)",
    "cat <<'EOF' > out.txt\nline one\n\tline two\nEOF",
    "if [[ -z \"${VAR:-}\" ]]; then echo 'unset'; fi",
    "awk -F: '{print $1}' /etc/passwd | sort | uniq -c | sort -rn | head -n 5",
    # misc markup
    "<html><body><p class=\"x\">Hello &amp; welcome</p></body></html>",
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "# Title\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n",
    "key: value\nlist:\n  - a\n  - b\nmap: {x: 1, y: 2}\n",
]

WHITESPACE = [
    "", " ", "  ", "   ", "    ", " " * 7, " " * 16, " " * 33,
    "\t", "\t\t", "\t \t", " \t", "\n", "\n\n", "\n\n\n", "\n\n\n\n\n\n",
    "\r\n", "\r\n\r\n", "\r", "\r\r\n", "\n\r", " \n", "\n ", " \n ", "  \n\n  ",
    "a\nb", "a\n\nb", "a\n\n\nb", "a\r\nb", "a \nb", "a  b", "a   b", "a\tb", "a \t b",
    "hello   world", "hello \n world", "trailing   ", "   leading", "  both  ",
    "line1\r\nline2\r\n", "x\n    y\n        z", "\n    indented\n", "a\x0bb\x0cc",
    "\u00a0", "a\u00a0b", "\u3000", "日本\u3000語", "\u2000\u2001\u2002\u2003",
    "a\u2009b\u200ac", "x\u2028y\u2029z", "\u202f\u205f", "\u1680", "a\u0085b",
    "\x1c\x1d\x1e\x1f", "a\x1fb", " \u00a0 ", "\t\n\t\n", ".\n\n", "!\r\n\r\n",
    "end.\n", "  # comment\n", ";\n\n\n", "}\n\n", "  -\n",
]

CONTRACTIONS = [
    "it's", "don't", "we're", "they've", "I'm", "you'll", "he'd",
    "IT'S", "DON'T", "WE'RE", "THEY'VE", "I'M", "YOU'LL", "HE'D",
    "It'S", "Don'T", "We'Re", "They'Ve", "You'Ll", "He'D", "we'rE", "y'ALL",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'x", "'",
    "''s", " 's", "s's", "rock'n'roll", "o'clock", "'tis", "can't've",
    "John's book isn't here, it's there.", "We'll see; they'd know; I've been.",
    "'ſ", "'ſt", "'K", "'\u0130", "l'été", "aujourd'hui",
]

NUMBERS = [
    "0", "7", "42", "123", "2048", "151936", "1234567890", "12345678901234567890123456789",
    "3.14159", "-2.5e-10", "1,000,000", "1.000.000,50", "0xDEADBEEF", "0b1010",
    "v1.2.3", "2026-11-22T01:53:00Z", "+1 (555) 123-4567", "100%", "$9.99", "€5", "¥1000",
    "1st 2nd 3rd 4th", "a1b2c3", "x²+y³", "½ ¼ ¾", "①②③", "Ⅻ ⅻ", "١٢٣٤", "۱۲۳", "१२३",
    "１２３４", "๑๒๓", "〇一二三", "𝟙𝟚𝟛", "9" * 100,
]

EMOJI = [
    "😀", "😀😃😄", "hi 👋", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇺🇸🇩🇪🇯🇵", "🇫🇷 France",
    "1️⃣", "#️⃣", "❤️", "❤\ufe0f", "☺︎", "🧑🏿‍🚀", "🤷‍♀️", "😀 😃 😄 😁", "🔥🔥🔥", "emoji😀in😀text",
    "🐍 python", "🦀 rust", "✅ done ❌ failed", "👁️‍🗨️", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
]

SCRIPTS = [
    "你好，世界！", "我爱自然语言处理。", "机器学习是人工智能的一个分支", "中文English混合text",
    "日本語のテキストです。", "カタカナとひらがな", "東京タワー", "한국어 텍스트입니다", "안녕하세요",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "ПРИВЕТ мир 123",
    "Γειά σου Κόσμε", "αβγδε ΑΒΓΔΕ", "مرحبا بالعالم", "العربية: ١٢٣", "שלום עולם", "עברית ABC",
    "नमस्ते दुनिया", "हिन्दी भाषा", "สวัสดีชาวโลก", "ภาษาไทย", "Ελληνικά", "Ąčęėįšųūž", "Zażółć gęślą jaźń",
    "Tiếng Việt có dấu", "Türkçe: İstanbul ılık", "Straße ß ẞ", "Ærø Øl Åse", "ỹ ẽ ũ",
    "각", "\u1100\u1161\u11a8\u1100\u1161", "ﾊﾝｶｸｶﾀｶﾅ", "ＡＢＣ　ｄｅｆ", "ﬁ ﬂ ﬀ", "㍿ ㌀",
    "ⴰⵣⵓⵍ", "ᐊᐃᑦ", "ꦲꦏ꧀ꦱꦫ", "𐍈𐌰𐌹", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𓀀𓀁", "ꙮ",
]

ACCENTS = [
    "café", "cafe\u0301", "Café Noir", "Cafe\u0301 Noir", "naïve", "nai\u0308ve", "résumé", "re\u0301sume\u0301",
    "Å", "A\u030a", "\u212b", "Ω \u2126", "Ç", "C\u0327", "ñ", "n\u0303", "e\u0301\u0301", "a\u0300\u0301\u0302",
    "\u0301", "\u0301abc", "x\u0301y", " \u0301", "1\u0301", "ǘ", "u\u0308\u0301", "ệ", "e\u0323\u0302",
    "Ḝ", "E\u0327\u0306", "ﬃ", "\u0958", "क\u093c", "\u1e9b\u0323", "Å\u0301", "한", "\u1112\u1161\u11ab",
]

ODD = [
    "\x00", "a\x00b", "\x00\x00\x00", "\x01\x02\x03", "\x07bell", "\x1b[31mred\x1b[0m", "\x7f", "del\x7f",
    "\ufffd", "a\ufffdb", "\ufffd\ufffd", "\ufeff", "\ufeffBOM", "\u200b", "a\u200bb", "\u200d", "a\u200cb",
    "\u200e\u200f", "\u202e reversed", "\U0010ffff", "\ue000", "\uffff", "\ufffe", "\U000e0001",
    "\u0600\u0601", "\u00ad", "soft\u00adhyphen", "\u2060", "\U0001d173", "\U00010000",
    "\u0378", "\u088f", "\ua7ce", "a\U00010940b", "\U0002ebf0",
]

SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\nHello!<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_end|><|im_start|>", "<|im_end|><|endoftext|>", "text<|endoftext|>more text",
    "<|im_start", "<|im_start|", "im_start|>", "<|im_start|>>", "<<|im_end|>", "<|<|im_end|>|>",
    "<think>\n\n</think>\n\n", "<think>reasoning here</think>answer", "</think>", "<think>",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", "<tool_response>\nok\n</tool_response>",
    "<|fim_prefix|>def f():\n    <|fim_suffix|>\n    return x<|fim_middle|>", "<|fim_pad|><|repo_name|>r<|file_sep|>a.py",
    "<|vision_start|><|image_pad|><|vision_end|>", "<|object_ref_start|>x<|object_ref_end|>",
    "<|box_start|>(1,2)<|box_end|>", "<|quad_start|><|quad_end|>", "<|video_pad|>", "<|vision_pad|>",
    "e<|im_end|>\u0301", "cafe\u0301<|im_start|>cafe\u0301", " <|im_end|> ", "\n<|im_start|>\n",
    "<|IM_START|>", "<|im_start |>", "<| im_end |>", "<|endoftext|><|endoftext|><|endoftext|>",
    "<tool_call><tool_call>", "<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>",
]

LONG = [
    " " * 300,
    "a" * 500,
    "=" * 200 + "\n",
    "ab" * 300,
    "\n" * 100,
    "\t" * 64 + "x",
    "1234567890" * 30,
    "😀" * 60,
    "é" * 100,
    "e\u0301" * 100,
    "The quick brown fox jumps over the lazy dog. " * 40,
    "def f(x):\n    return x * 2\n\n" * 30,
    "абвгд" * 80,
    "中文字符" * 60,
    "supercalifragilisticexpialidocious" * 5,
    "-_" * 150,
    "a" + " " * 100 + "b" + "\n" * 10 + " " * 50,
]

_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("0123456789")
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\u00a0", "\u3000"]
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"]
    + ["é", "e\u0301", "ñ", "n\u0303", "ü", "\u0308", "\u0301", "Å", "ß", "ø"]
    + ["中", "文", "日", "本", "語", "한", "글", "あ", "カ", "ー"]
    + ["д", "Ж", "я", "α", "Ω", "ع", "ب", "ש", "क", "ि", "ก", "ั"]
    + ["😀", "👍🏽", "👩‍💻", "🇺🇸", "❤️", "\u200d", "\ufe0f", "1️⃣"]
    + ["\x00", "\x01", "\x1f", "\x7f", "\ufffd", "\ufeff", "\u200b", "\U0010ffff"]
    + ["١", "²", "½", "Ⅻ", "①", "１"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|fim_pad|>", "<|", "|>"]
    + ["the", " the", "ing", " and", "tion", "def", "return", "self", "    ", "//", "/*", "*/", "->", "=>", "::"]
)


def _random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice((1, 2, 3, 5, 8, 13, 21, 34, 55))
        out.append("".join(rng.choice(_POOL) for _ in range(k)))
    return out


def _word_mixes(seed: int) -> list[str]:
    # Sentences built from real words with varied spacing / punctuation / case.
    rng = random.Random(seed)
    words = (
        "the model token layer expert router attention cache value key query hello world "
        "don't it's we'll THE Model TOKEN naïve café über straße 東京 北京 Москва مرحبا 42 3.14 2048 "
        "x y z foo bar baz qux i j k ok OK Ok".split()
    )
    seps = [" ", " ", " ", ", ", ". ", "\n", "  ", "\t", "; ", " - ", "!\n", "?\r\n", "\n\n", "(", ")", "\"", "'"]
    out = []
    for _ in range(120):
        k = rng.randint(1, 14)
        parts = []
        for _ in range(k):
            parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        s = "".join(parts)
        if rng.random() < 0.3:
            s = s.upper()
        out.append(s)
    return out


def build_corpus() -> list[str]:
    """The full deterministic corpus (hand-written cases + seeded random mixtures)."""
    corpus: list[str] = []
    for group in (CODE, WHITESPACE, CONTRACTIONS, NUMBERS, EMOJI, SCRIPTS, ACCENTS, ODD, SPECIALS, LONG):
        corpus.extend(group)
    # Every code snippet with CRLF line endings and with a leading space.
    corpus.extend(s.replace("\n", "\r\n") for s in CODE[:20])
    corpus.extend(" " + s for s in CODE[20:40])
    corpus.extend(_word_mixes(seed=20261122))
    corpus.extend(_random_strings(220, seed=1234))
    return corpus


if __name__ == "__main__":
    c = build_corpus()
    print(len(c), "strings,", sum(len(s) for s in c), "characters")
