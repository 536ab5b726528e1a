#include "python_text.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace nuwa {

std::string py_repr(const std::string& text) {
  bool has_single = text.find('\'') != std::string::npos;
  bool has_double = text.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == static_cast<unsigned char>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);  // UTF-8 of printable characters, as repr shows them
    }
  }
  out += quote;
  return out;
}

std::string py_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[64];
  double magnitude = std::fabs(value);
  bool fixed = value == 0.0 || (magnitude >= 1e-4 && magnitude < 1e16);
  auto result = std::to_chars(buf, buf + sizeof buf, value,
                              fixed ? std::chars_format::fixed : std::chars_format::scientific);
  std::string out(buf, result.ptr);
  if (fixed && out.find('.') == std::string::npos) out += ".0";
  return out;
}

}  // namespace nuwa
