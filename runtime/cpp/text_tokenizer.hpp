// The byte-level text tokenizer (spec/tokenizer.py): normalise, UTF-8 bytes (ids 0-255), <eos>,
// <pad> to the model's text length. This version normalises ASCII text exactly as Python's
// NFKC + lower() + split() do; text with other characters is refused (Unicode NFKC is not
// implemented here yet).
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

// ASCII text normalised as spec/tokenizer.py normalise() does. `what` names the text in errors.
std::string normalise(const std::string& text, const std::string& what);

// The id row (max_len,) of one prompt; empty text only with allow_empty (the unconditional
// prompt). Errors are spec/tokenizer.py's PromptError messages.
std::vector<int64_t> encode_prompt(const std::string& text, int max_len, bool allow_empty,
                                   const std::string& what);

}  // namespace nuwa
