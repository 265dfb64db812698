"""The `qwen3moe` command line, run as users run it: `python -m qwen3moe ...` subprocesses with the
test's environment, on the embedded default model (tiny, so each call takes about a second).

Covers each subcommand's happy path, `--help` of every subcommand, usage errors (exit 2 and one
line on stderr), errors in the work (a bad file: exit 1 and a one-line message, no traceback),
and that `run` streams: generated text reaches stdout while the process is still running."""
from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import time

import pytest

import qwen3moe
from _subproc import subprocess_env
from qwen3moe.stages import ALL_STAGES

SUBCOMMANDS = ["run", "parity", "bench", "inspect", "synth"]


def cli(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m qwen3moe ARGS` with this test's environment."""
    return subprocess.run([sys.executable, "-m", "qwen3moe", *args], input=input, capture_output=True, text=True,
                          env=subprocess_env(), timeout=timeout)


@pytest.fixture(scope="module")
def model_path() -> str:
    # Written once (in-process) so that the subprocesses below find it cached.
    return qwen3moe.default_model_path()


@pytest.fixture(scope="module")
def model(model_path):
    with qwen3moe.load(model_path, n_ctx=256, threads=1) as m:
        yield m


def one_line_error(stderr: str, command: str | None = None) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line message on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    prefix = "qwen3moe" + (f" {command}" if command else "")
    assert lines[0].startswith(prefix) and "error:" in lines[0], lines[0]
    return lines[0]


# ---- happy paths ---------------------------------------------------------------------------


def test_run_prompt(model_path, model):
    r = cli("run", "-p", "def add(a, b):", "-n", "8")
    assert r.returncode == 0, r.stderr
    expected = model.generate("def add(a, b):", max_tokens=8)
    assert r.stdout == "def add(a, b):" + expected + "\n"
    # stderr: one timing line, at the end
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("[load ") and "tok/s" in last and "generated 8 tokens" in last, r.stderr


def test_run_chat_via_stdin(model_path, model):
    r = cli("run", "--chat", "-n", "6", input="hello there\n/exit\n")
    assert r.returncode == 0, r.stderr
    # One reply, generated from the chat template applied to the one user message.
    prompt = model.apply_chat_template([{"role": "user", "content": "hello there"}], add_generation_prompt=True)
    reply = model.generate(prompt, max_tokens=6)
    assert r.stdout == "> " + reply + "\n> "  # input prompt, the streamed reply, the prompt /exit answers
    assert "chat mode" in r.stderr and r.stderr.count("[load ") == 1


def test_run_chat_eof_exits_cleanly(model_path):
    r = cli("run", "--chat", "-n", "4", input="")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_parity_table_and_plot(model_path, tmp_path):
    png = tmp_path / "parity.png"
    r = cli("parity", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "stage" in out and "cosine" in out and "max|diff|" in out
    n_layer = qwen3moe.inspect(model_path).metadata["qwen3moe.block_count"]
    # every stage of every layer, plus embed/final_norm/logits, and the summary lines
    assert f"{3 + n_layer * (len(ALL_STAGES) - 3)} (stage, layer) pairs" in out
    assert "argmax agrees at" in out
    if not qwen3moe.cuda_available():
        assert "float reference" in out.splitlines()[0]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_parity_json(model_path):
    r = cli("parity", "--json", "--stages", "attn_norm,moe_router_indices,logits")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    n_layer = qwen3moe.inspect(model_path).metadata["qwen3moe.block_count"]
    assert {"title", "model", "n_tokens", "rows", "min_cosine", "n_diff", "routers_agree", "argmax_agree"} <= set(d)
    assert len(d["rows"]) == 2 * n_layer + 1
    assert {r["stage"] for r in d["rows"]} == {"attn_norm", "moe_router_indices", "logits"}
    row = d["rows"][0]
    assert {"stage", "layer", "cosine", "max_abs_diff", "rel_l2", "n_diff", "n", "identical"} <= set(row)
    assert 0 <= d["argmax_agree"] <= d["n_tokens"]
    assert -1.0 <= d["min_cosine"] <= 1.0


def test_bench_json(model_path):
    r = cli("bench", "-p", "16", "-n", "4", "-r", "1", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["n_prompt"], x["n_gen"]) for x in rows] == [(16, 0), (0, 4)]
    llama_bench_fields = {"model_filename", "model_type", "model_size", "model_n_params", "backends", "n_threads",
                          "type_k", "type_v", "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns",
                          "avg_ts", "stddev_ts", "samples_ns", "samples_ts"}
    for x in rows:
        assert llama_bench_fields <= set(x), llama_bench_fields - set(x)
        assert len(x["samples_ns"]) == 1 and x["avg_ts"] > 0
        assert x["median_ns"] == x["samples_ns"][0] and x["median_ts"] == x["samples_ts"][0]
        assert x["timer"] == "perf_counter" and x["decode_path"] == "op-by-op"


def test_inspect(model_path):
    r = cli("inspect")
    assert r.returncode == 0, r.stderr
    info = qwen3moe.inspect(model_path)
    assert model_path in r.stdout
    assert f"{len(info.tensors)} tensors" in r.stdout
    for t in info.tensors:
        assert t.name in r.stdout


def test_synth(tmp_path):
    out = tmp_path / "t.gguf"
    r = cli("synth", str(out), "--preset", "tiny", "-q")
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    info = qwen3moe.inspect(out)
    assert info.architecture == "qwen3moe"
    with qwen3moe.load(out, n_ctx=32, threads=1) as m:
        assert m.forward([1, 2, 3]).logits.shape == (m.config["vocab_size"],)


@pytest.mark.parametrize("command", [None] + SUBCOMMANDS)
def test_help(command):
    r = cli(*([command] if command else []), "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: qwen3moe{' ' + command if command else ''}")
    if command is None:
        for c in SUBCOMMANDS:
            assert c in r.stdout


# ---- usage errors: exit 2, one line --------------------------------------------------------


@pytest.mark.parametrize("args, command, words", [
    (["run", "--bogus"], None, "unrecognized arguments: --bogus"),
    (["run", "-n", "many"], "run", "not a number"),
    (["run", "-n", "-3"], "run", "must be >= 0"),
    (["run", "--top-p", "1.5"], "run", "--top-p"),
    (["bench", "-p", "16,x"], "bench", "comma-separated integers"),
    (["bench", "-r", "0"], "bench", "must be >= 1"),
    (["parity", "--stages", "q,nope"], "parity", "unknown stage"),
    (["synth"], "synth", "required: out"),
    (["synth", "x.gguf", "--preset", "huge"], "synth", "invalid choice"),
    ([], None, "required: COMMAND"),
    (["frobnicate"], None, "invalid choice"),
])
def test_usage_errors(args, command, words):
    r = cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = one_line_error(r.stderr, command)
    assert words in line
    assert r.stdout == ""


# ---- errors in the work: exit 1, one clear line ----------------------------------------------


@pytest.fixture()
def bad_file(tmp_path):
    p = tmp_path / "not-a-model.gguf"
    p.write_bytes(b"this is not a GGUF file, just text\n" * 4)
    return p


@pytest.mark.parametrize("args", [["inspect", "{bad}"], ["run", "-m", "{bad}", "-n", "2"], ["parity", "-m", "{bad}"],
                                  ["bench", "-m", "{bad}", "-p", "4", "-n", "1", "-r", "1"]])
def test_bad_file(args, bad_file):
    r = cli(*[a.format(bad=bad_file) for a in args])
    assert r.returncode == 1, (r.returncode, r.stderr)
    line = one_line_error(r.stderr, args[0])
    assert "magic" in line.lower() or "gguf" in line.lower(), line


def test_missing_file(tmp_path):
    missing = tmp_path / "missing.gguf"
    for args in (["inspect", str(missing)], ["run", "-m", str(missing)]):
        r = cli(*args)
        assert r.returncode == 1, r.stderr
        line = one_line_error(r.stderr, args[0])
        assert "no such file" in line and str(missing) in line


def test_context_overflow_is_a_clean_error(model_path):
    r = cli("run", "-c", "4", "-p", "a prompt that is longer than four tokens", "-n", "2")
    assert r.returncode == 1
    line = one_line_error(r.stderr, "run")
    assert "context" in line and "n_ctx = 4" in line


@pytest.mark.skipif(qwen3moe.cuda_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_clean_error(model_path):
    r = cli("run", "--device", "cuda", "-n", "2")
    assert r.returncode == 1
    assert "cuda" in one_line_error(r.stderr, "run").lower()


# ---- streaming --------------------------------------------------------------------------------


def _full_pipe() -> tuple[int, int, int]:
    """A pipe whose buffer is already full: (read fd, write fd, bytes in it). A process that
    gets the write end as stderr blocks on its first stderr write until the reader drains it."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    filled = 0
    for chunk in (65536, 4096, 1):
        while True:
            try:
                filled += os.write(w, b"#" * chunk)
            except BlockingIOError:
                break
    fcntl.fcntl(w, fcntl.F_SETFL, flags)  # the child must get an ordinary blocking stderr
    return r, w, filled


def _read_to_eof(fd: int) -> bytes:
    out = b""
    while True:
        b = os.read(fd, 65536)
        if not b:
            return out
        out += b


def test_run_streams_before_the_process_ends(model_path, model):
    """`run -n 64` writes text to stdout as it is generated; the timing line goes to stderr at
    the end. The child's stderr is a pipe we keep full, so the child cannot write its timing
    line, hence cannot finish, until we drain it: generated text that we read from stdout
    before draining was therefore flushed while the process was still running."""
    prompt = "def fibonacci(n):"  # the default prompt of `run`
    expected = model.generate(prompt, max_tokens=64)
    assert len(expected) > 0
    # Without PYTHONUNBUFFERED, as users run it: stdout into a pipe is then block-buffered, so
    # text arrives early only if the CLI flushes it.
    env = subprocess_env()
    env.pop("PYTHONUNBUFFERED", None)
    err_r, err_w, filled = _full_pipe()
    proc = subprocess.Popen([sys.executable, "-m", "qwen3moe", "run", "-n", "64"], stdout=subprocess.PIPE,
                            stderr=err_w, env=env)
    os.close(err_w)
    fd = proc.stdout.fileno()
    try:
        got = b""
        deadline = time.monotonic() + 60
        # Read incrementally until some generated text (beyond the echoed prompt) has arrived.
        while len(got) <= len(prompt.encode()):
            assert time.monotonic() < deadline, f"no generated text on stdout after 60 s (got {got!r})"
            if select.select([fd], [], [], 1.0)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed early (got {got!r})"
                got += chunk
        assert proc.poll() is None, "the process ended before its timing line could be written"
        assert got.startswith(prompt.encode())
        # Let it finish: drain stderr (our filler, then the child's own lines), read the rest.
        err = _read_to_eof(err_r)
        rest = _read_to_eof(fd)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        os.close(err_r)
    stderr = err[filled:].decode()
    assert (got + rest).decode() == prompt + expected + "\n"
    assert stderr.strip().splitlines()[-1].startswith("[load ") and "generated" in stderr
