#include "text_tokenizer.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>

#include <cstdio>
#include <stdexcept>

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

void check_utf8(const std::string& text, const std::string& what) {
  long bad = utf8_error_at(text);
  if (bad < 0) return;
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[bad]));
  input_error(what + " is not valid UTF-8: byte " + byte + " at position " + std::to_string(bad));
}

bool python_space(uint32_t c) {
  switch (c) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
      return true;
    default:
      return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || (c >= 0x2000 && c <= 0x200A);
  }
}

std::string normalise(const std::string& text) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfkc = icu::Normalizer2::getNFKCInstance(status);
  if (U_FAILURE(status)) {
    throw std::runtime_error(std::string("ICU's NFKC normaliser is missing: ") + u_errorName(status));
  }
  icu::UnicodeString folded = nfkc->normalize(icu::UnicodeString::fromUTF8(text), status);
  if (U_FAILURE(status)) {
    throw std::runtime_error(std::string("ICU could not normalise a prompt: ") + u_errorName(status));
  }
  folded.toLower(icu::Locale::getRoot());  // str.lower(): full mappings, Final_Sigma, no locale
  icu::UnicodeString joined;  // " ".join(text.split())
  bool pending_space = false;
  for (int32_t i = 0; i < folded.length();) {
    UChar32 c = folded.char32At(i);
    i += U16_LENGTH(c);
    if (python_space(static_cast<uint32_t>(c))) {
      pending_space = !joined.isEmpty();
      continue;
    }
    if (pending_space) joined.append(static_cast<UChar>(u' '));
    pending_space = false;
    joined.append(c);
  }
  std::string out;
  joined.toUTF8String(out);
  return out;
}

std::vector<int64_t> encode_prompt(const std::string& text, int max_len, bool allow_empty) {
  std::string data = normalise(text);
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
