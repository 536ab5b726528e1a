#include "text_tokenizer.hpp"

#include <cstdio>

#include "nuwa_error.hpp"

namespace nuwa {

long utf8_error_at(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return static_cast<long>(i);
    }
    for (size_t k = 1; k < len; ++k) {
      if (i + k >= n) return static_cast<long>(i);
      unsigned char b = s[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return static_cast<long>(i);
    }
    i += len;
  }
  return -1;
}

namespace {
// Python's str.split() whitespace among ASCII characters.
bool is_space(unsigned char c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
}
}  // namespace

std::string normalise(const std::string& text, const std::string& what) {
  std::string out;
  bool pending_space = false;
  for (unsigned char c : text) {
    if (c >= 0x80) {
      input_error(what + " holds non-ASCII text; this version of the C runtime normalises ASCII "
                  "prompts only (Unicode NFKC is not implemented in C yet)");
    }
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  }
  return out;
}

std::vector<int64_t> encode_prompt(const std::string& text, int max_len, bool allow_empty,
                                   const std::string& what) {
  std::string data = normalise(text, what);
  if (data.empty() && !allow_empty) input_error("the prompt is empty");
  int max_bytes = max_len - 1;
  if (static_cast<int>(data.size()) > max_bytes) {
    input_error("the prompt is " + std::to_string(data.size()) +
                " bytes long; this model takes at most " + std::to_string(max_bytes) +
                " bytes (UTF-8, after normalising)");
  }
  std::vector<int64_t> ids(max_len, kPadId);
  for (size_t i = 0; i < data.size(); ++i) ids[i] = static_cast<unsigned char>(data[i]);
  ids[data.size()] = kEosId;
  return ids;
}

}  // namespace nuwa
