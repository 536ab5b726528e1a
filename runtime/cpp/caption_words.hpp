// The words a model's captions hold (input_rules.json "caption": its word lists and the grammar's
// fixed words) and the one-line warning for a prompt with other words, naming the nearest known
// ones, as spec/input_rule_parts.py CaptionGrammar.unknown_words_message words it: the nearest
// words are Python's difflib.get_close_matches(word, known, n=3, cutoff=0.6), ported (its
// SequenceMatcher ratio; no autojunk below 200 characters, so none for words).
#pragma once

#include <set>
#include <string>
#include <vector>

namespace nuwa {

// The words of UTF-8 `text` (Python's re [^\W_]+: runs of str.isalnum() code points), in order.
std::vector<std::string> words_of(const std::string& text);

// difflib.SequenceMatcher(None, a, b).ratio() of two UTF-8 words (compared by code point)
double match_ratio(const std::string& a, const std::string& b);

// difflib.get_close_matches(word, known, n, cutoff): best first (ties: the larger word first).
std::vector<std::string> close_matches(const std::string& word, const std::set<std::string>& known,
                                       int n = 3, double cutoff = 0.6);

// The warning for a normalised prompt (text_tokenizer.hpp normalise), or "" when every word is known.
std::string unknown_words_message(const std::string& normalised_prompt,
                                  const std::set<std::string>& known);

}  // namespace nuwa
