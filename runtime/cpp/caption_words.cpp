#include "caption_words.hpp"

#include <algorithm>
#include <map>
#include <tuple>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

namespace nuwa {

namespace {

// Python's str.isalnum() (re's [^\W_]): a letter (Lu Ll Lt Lm Lo) or a number with a
// Numeric_Type (decimal, digit or numeric, Unihan's values included), in ICU's Unicode version.
bool word_char(UChar32 c) {
  if (U_GET_GC_MASK(c) & U_GC_L_MASK) return true;
  return u_getIntPropertyValue(c, UCHAR_NUMERIC_TYPE) != U_NT_NONE;
}

// Valid UTF-8 -> code points (difflib compares str, one code point an element).
std::u32string code_points(const std::string& text) {
  std::u32string out;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U8_NEXT(s, i, n, c);
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

// SequenceMatcher.find_longest_match without junk: the longest common block of a[alo:ahi] and
// b[blo:bhi], the earliest in a (by its end), then in b, as difflib's loop finds it.
std::tuple<int, int, int> longest_match(const std::u32string& a, const std::u32string& b, int alo,
                                        int ahi, int blo, int bhi) {
  int besti = alo, bestj = blo, bestsize = 0;
  std::map<int, int> j2len;
  for (int i = alo; i < ahi; ++i) {
    std::map<int, int> next;
    for (int j = blo; j < bhi; ++j) {  // b2j[a[i]]: b's positions holding a[i], ascending
      if (b[j] != a[i]) continue;
      auto prev = j2len.find(j - 1);
      int k = next[j] = (prev == j2len.end() ? 0 : prev->second) + 1;
      if (k > bestsize) besti = i - k + 1, bestj = j - k + 1, bestsize = k;
    }
    j2len = std::move(next);
  }
  return {besti, bestj, bestsize};
}

int matching_characters(const std::u32string& a, const std::u32string& b, int alo, int ahi, int blo,
                        int bhi) {
  auto [i, j, k] = longest_match(a, b, alo, ahi, blo, bhi);
  if (k == 0) return 0;
  int total = k;
  if (alo < i && blo < j) total += matching_characters(a, b, alo, i, blo, j);
  if (i + k < ahi && j + k < bhi) total += matching_characters(a, b, i + k, ahi, j + k, bhi);
  return total;
}

// repr() of a word: letters and numbers are printable and hold no quote, so it is shown as is
std::string py_repr_word(const std::string& w) { return "'" + w + "'"; }

}  // namespace

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const int32_t n = static_cast<int32_t>(text.size());
  for (int32_t i = 0; i < n;) {
    const int32_t at = i;
    UChar32 c;
    U8_NEXT(s, i, n, c);
    if (c >= 0 && word_char(c)) {
      cur.append(text, static_cast<size_t>(at), static_cast<size_t>(i - at));
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

double match_ratio(const std::string& a_text, const std::string& b_text) {
  const std::u32string a = code_points(a_text), b = code_points(b_text);
  const int la = static_cast<int>(a.size()), lb = static_cast<int>(b.size());
  if (la + lb == 0) return 1.0;
  return 2.0 * matching_characters(a, b, 0, la, 0, lb) / (la + lb);
}

std::vector<std::string> close_matches(const std::string& word, const std::set<std::string>& known,
                                       int n, double cutoff) {
  std::vector<std::pair<double, std::string>> scored;
  for (const auto& x : known) {  // SequenceMatcher: seq1 = the candidate, seq2 = the word
    double r = match_ratio(x, word);
    if (r >= cutoff) scored.emplace_back(r, x);
  }
  std::sort(scored.begin(), scored.end(), [](const auto& p, const auto& q) { return p > q; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && static_cast<int>(i) < n; ++i) out.push_back(scored[i].second);
  return out;
}

std::string unknown_words_message(const std::string& normalised_prompt,
                                  const std::set<std::string>& known) {
  std::vector<std::string> unknown;
  for (const auto& w : words_of(normalised_prompt)) {
    if (!known.count(w) && std::find(unknown.begin(), unknown.end(), w) == unknown.end()) {
      unknown.push_back(w);
    }
  }
  if (unknown.empty()) return "";
  std::string parts;
  for (const auto& w : unknown) {
    std::vector<std::string> near = close_matches(w, known);
    std::string hint;
    for (const auto& m : near) hint += (hint.empty() ? "" : ", ") + m;
    parts += (parts.empty() ? "" : ", ") + py_repr_word(w) + (near.empty() ? "" : " (nearest known: " + hint + ")");
  }
  return "the model never saw the word" + std::string(unknown.size() > 1 ? "s " : " ") + parts +
         "; generating anyway (its words: nuwa info --model DIR)";
}

}  // namespace nuwa
