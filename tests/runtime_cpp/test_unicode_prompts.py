"""Unicode prompts in the C++ runtime: ``nuwa_prompt_tokens`` gives the Python tokenizer's ids
(spec/tokenizer.py: NFKC, ``str.lower()``, whitespace collapsed, UTF-8 bytes) — ICU's NFKC and
root-locale full lower case beside Python's unicodedata — and bad text gets Python's message.

Unicode versions: Python 3.11's unicodedata is Unicode 14.0; ICU 72 (Debian 12) is 15.0. Of all
1,112,064 code points the C runtime normalises every one the same as Python, except code points
that Python's Unicode does not assign yet: with ICU 72 the 62 Cyrillic modifier letters
U+1E030..U+1E06D (Unicode 15.0, compatibility decompositions to Cyrillic letters), which Python
3.11 keeps as they are. The sweep below pins that: a code point may differ only if it is
unassigned (category Cn) in Python's unicodedata."""

from __future__ import annotations

import ctypes
import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuwa.runtime.backends.onnxruntime import OnnxRuntimeBackend
from nuwa.runtime.request_checks import check_prompt_text
from nuwa.spec.errors import NuwaInputError
from nuwa.spec.input_rules import InputRules
from nuwa.spec.tokenizer import ByteTokenizer, PromptError

from . import capi, capi_files

DEMO_RULES = (
    Path(__file__).resolve().parents[2] / "model" / "checkpoints" / "demo" / "input_rules.json"
)
FIXTURES = [HealthCheck.function_scoped_fixture]  # module fixtures only: safe
PY_SPACES = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())

# Characters that normalising changes, a few of each kind, and plain ones around them.
TRICKY = (
    "aeiou AEIOU xyz 0123 .,-'\"!?"
    "éèêëÉÈÊËçÇñÑåÅøØæÆœŒ"  # accents, precomposed
    "\u0301\u0300\u0302\u0308\u0327\u0323\u031b\u0345"  # combining marks (ypogegrammeni: cased)
    "ＡＢＣａｂｃ０１２！？　ｶﾞﾊﾟ"  # full width and half width
    "ﬀﬁﬂﬃﬄﬅﬆĲĳǅǈǋ"  # ligatures, title-case digraphs
    "漢字日本語中文한국어ㄱㅏ가\u1100\u1161\u11a8"  # CJK, Hangul syllables and jamo (composed)
    "😀🎉👍🏽👨\u200d👩\u200d👧❤\ufe0f🇩🇪"  # emoji, skin tone, ZWJ sequence, flags
    "İıIiŞşĞğ"  # Turkish: İ lower-cases to i + U+0307 outside Turkish
    "ßẞ"  # German sharp s (ẞ lower-cases to ß)
    "ΣσςΑΒΓ"  # Greek: Σ lower-cases to ς at a word's end (Final_Sigma)
    "ⅠⅡⅢⅰ①⑩²³½℃№™㎏㍿"  # compatibility forms
    "ﷺ"  # the longest NFKC expansion (18 characters)
    "\u00a0\u2009\u3000\u2028\u0085\u1680\x1c\t\n"  # whitespace Python's split() splits on
    "\u200b\u00ad\ufeff"  # not whitespace for split()
)


@pytest.fixture(scope="module")
def files_lib(lib: ctypes.CDLL) -> ctypes.CDLL:
    return capi_files.declare(lib)


@pytest.fixture(scope="module")
def text_length(lib: ctypes.CDLL, tiny_c_model) -> int:
    info = capi.ModelInfo()
    info.struct_size = ctypes.sizeof(info)
    capi.check(lib, lib.nuwa_model_get_info(tiny_c_model, ctypes.byref(info)))
    return info.max_prompt_bytes + 1


def python_ids(text: str, length: int) -> list[int] | str:
    try:
        return ByteTokenizer(length).encode(text).tolist()
    except PromptError as exc:
        return str(exc)


def test_python_whitespace_set_is_the_c_runtime_s() -> None:
    """text_tokenizer.cpp python_space() lists these; the sweep below checks the C side."""
    assert [hex(ord(c)) for c in PY_SPACES] == [
        "0x9", "0xa", "0xb", "0xc", "0xd", "0x1c", "0x1d", "0x1e", "0x1f", "0x20", "0x85",
        "0xa0", "0x1680", "0x2000", "0x2001", "0x2002", "0x2003", "0x2004", "0x2005", "0x2006",
        "0x2007", "0x2008", "0x2009", "0x200a", "0x2028", "0x2029", "0x202f", "0x205f", "0x3000",
    ]  # fmt: skip


def test_every_code_point_tokenizes_as_python(files_lib, tiny_c_model, text_length) -> None:
    """Every code point between letters, eight to a prompt (one by one where eight are too
    long): equal ids, or equal messages; a code point that differs must be one Python's
    Unicode leaves unassigned."""
    points = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    differing: list[int] = []

    def compare(chunk: list[int]) -> bool:
        text = "x" + "x".join(chr(c) for c in chunk) + "x"
        got = capi_files.prompt_tokens(files_lib, tiny_c_model, text.encode(), text_length)
        return got == python_ids(text, text_length)

    for at in range(0, len(points), 8):
        chunk = points[at : at + 8]
        if not compare(chunk):
            differing += [c for c in chunk if not compare([c])]
    assert all(unicodedata.category(chr(c)) == "Cn" for c in differing), [
        hex(c) for c in differing if unicodedata.category(chr(c)) != "Cn"
    ]
    assert len(differing) < 1000  # a newer ICU adds a version's decompositions, not more


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.sampled_from(TRICKY), max_size=40))
def test_random_unicode_prompts_tokenize_as_python(
    files_lib, tiny_c_model, text_length, text
) -> None:
    got = capi_files.prompt_tokens(files_lib, tiny_c_model, text.encode(), text_length)
    assert got == python_ids(text, text_length)


@pytest.mark.parametrize(
    "text",
    ["İstanbul", "ΟΔΟΣ ΣΑΣ", "Σ", "aΣ", "ΑΣ\u0301", "STRASSE straße ẞ", "ﬁne ﬂow",
     "ＡＢＣ　ｄｅｆ", "\u1100\u1161\u11a8", "e\u0301 é", "Ⅻⅰ", "ﷺ", "a\u00a0\u2028b\u0085c",
     "😀 👨\u200d👩\u200d👧"],
)  # fmt: skip
def test_known_cases_tokenize_as_python(files_lib, tiny_c_model, text_length, text: str) -> None:
    got = capi_files.prompt_tokens(files_lib, tiny_c_model, text.encode(), text_length)
    assert got == python_ids(text, text_length)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=12).filter(lambda b: b"\0" not in b))
def test_invalid_utf8_has_python_message(files_lib, tiny_c_model, text_length, data) -> None:
    try:
        want: list[int] | str = python_ids(check_prompt_text(data), text_length)
    except NuwaInputError as exc:
        want = str(exc)
    assert capi_files.prompt_tokens(files_lib, tiny_c_model, data, text_length) == want


def test_long_and_empty_prompts_have_python_messages(files_lib, tiny_c_model, text_length) -> None:
    for text in ["ﷺ" * 3, "é" * text_length, "  \u3000\u2028 ", "ｘ" * (text_length - 1)]:
        want = python_ids(text, text_length)
        assert capi_files.prompt_tokens(files_lib, tiny_c_model, text.encode(), text_length) == want
    assert isinstance(python_ids("ﷺ" * 3, text_length), str)  # the cases above include errors
    ids = (ctypes.c_int64 * (text_length - 1))()
    status = files_lib.nuwa_prompt_tokens(tiny_c_model, b"a", ids, text_length - 1)
    assert capi_files.failure(files_lib, status) == (
        capi.NUWA_ERROR_INPUT,
        f"the ids buffer holds {text_length - 1} values; this model's text is {text_length} "
        "tokens long (max_prompt_bytes + 1)",
    )


@pytest.fixture(scope="module")
def worded_model(lib, tiny_export_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny export with the demo's caption words and some that are not ASCII (the
    unknown-word warning: Python's [^\\W_]+ words and difflib on code points)."""
    export = tmp_path_factory.mktemp("unicode_words") / "export"
    shutil.copytree(tiny_export_dir, export)
    spec = OnnxRuntimeBackend.from_model_dir(export, device="cpu", threads=1).spec
    rules = InputRules.builtin(spec.image_size, spec.sketch_size, spec.frames).to_dict()
    caption = json.loads(DEMO_RULES.read_text())["caption"]
    caption["words"]["colours"] += ["grün", "weiß", "rød"]
    caption["words"]["shapes"] += ["würfel", "東京", "ıslak", "ⅻ", "straße"]
    rules["caption"] = caption
    InputRules.from_dict(rules).save(export)
    model = capi.open_model(lib, export, threads=1)
    loaded = InputRules.load(export)
    assert loaded is not None
    yield loaded, model
    lib.nuwa_close(model)


WORD_CASES = ["a grüne würfl", "東京x 東 京都", "a wEIß squäre", "ıslak islak İslak", "ⅻ xii Ⅻ",
              "rod rød röd", "strasse straße STRASSE", "ﬁgure ﬀ ½ ²", "a red square"]  # fmt: skip


@pytest.mark.parametrize("text", WORD_CASES)
def test_unknown_word_warnings_of_known_cases(lib, worded_model, text: str) -> None:
    rules, model = worded_model
    request, _keep = capi.make_request(lib, "t2i", [text.encode()])
    shape = capi.OutputShape()
    capi.check(lib, lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape)))
    want = rules.unknown_words_message(text)
    assert want is not None or text == "a red square"
    assert lib.nuwa_last_warnings().decode() == (want or "")


WORDS = TRICKY + "redgünweißwürfelstraße東京ıslakⅻ squaretcl"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.sampled_from(WORDS), min_size=1, max_size=30))
def test_unknown_word_warnings_of_unicode_prompts(lib, worded_model, text_length, text) -> None:
    rules, model = worded_model
    request, _keep = capi.make_request(lib, "t2i", [text.encode()])
    shape = capi.OutputShape()
    status = lib.nuwa_request_shape(model, ctypes.byref(request), ctypes.byref(shape))
    ids = python_ids(text, text_length)
    if isinstance(ids, str):  # empty or too long
        assert capi_files.failure(lib, status) == (capi.NUWA_ERROR_INPUT, ids)
        return
    capi.check(lib, status)
    assert lib.nuwa_last_warnings().decode() == (rules.unknown_words_message(text) or "")
