// The byte-level text tokenizer (spec/tokenizer.py): normalise, UTF-8 bytes (ids 0-255), <eos>,
// <pad> to the model's text length. Text is normalised as Python's
// " ".join(unicodedata.normalize("NFKC", text).lower().split()) does, with ICU: its NFKC
// normaliser, its full lower-case mapping in the root locale (SpecialCasing's unconditional
// mappings, Final_Sigma: what str.lower() does) and Python's str.isspace() set for split().
// ICU's Unicode version may be newer than Python's unicodedata (ICU 72: Unicode 15.0; Python
// 3.11: 14.0): code points unassigned in Python's version may then normalise differently
// (tests/runtime_cpp/test_unicode_prompts.py lists them); every code point assigned in both
// normalises the same.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nuwa {

constexpr int64_t kPadId = 256;
constexpr int64_t kEosId = 257;

// The byte offset of the first invalid UTF-8 sequence of `text`, or -1 when it is valid
// (Python's strict decoder: no overlongs, no surrogates, nothing past U+10FFFF).
long utf8_error_at(const std::string& text);

// An input error naming `what` and the first bad byte when `text` is not valid UTF-8.
void check_utf8(const std::string& text, const std::string& what);

// Python's str.isspace() for one code point (Unicode 14; what str.split() splits on).
bool python_space(uint32_t c);

// Valid UTF-8 text normalised as spec/tokenizer.py normalise() does.
std::string normalise(const std::string& text);

// The id row (max_len,) of one prompt; empty text only with allow_empty (the unconditional
// prompt). Errors are spec/tokenizer.py's PromptError messages.
std::vector<int64_t> encode_prompt(const std::string& text, int max_len, bool allow_empty);

}  // namespace nuwa
