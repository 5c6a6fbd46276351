// UTF-8 by hand, where text from other programs is taken apart: JSON's \u
// escapes (core/json_value) and a BPE tokenizer's byte-level alphabet and
// lossy conversion (prepare/bpe_tokenizer), and text from files made safe to
// show. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

// Appends code point `cp` (at most U+10FFFF) as UTF-8.
void append_utf8(std::string& out, uint32_t cp);
// The code points of `s`, which must be valid UTF-8 (see valid_utf8).
std::vector<uint32_t> code_points(const std::string& s);
// `s` with every invalid sequence (stray or missing continuation bytes,
// overlong forms, surrogates, past U+10FFFF) replaced by U+FFFD, as a lossy
// conversion to a Rust String (what the tokenizers library takes) does.
std::string valid_utf8(const std::string& s);
// `s` as it may be shown on a terminal or in a document: control characters
// (C0 but tab, DEL, C1: what starts a terminal escape sequence) and invalid
// bytes become \xNN (C1 as \u00NN); valid UTF-8 text (Korean, Cyrillic) is
// kept. For anything shown from a file another program could have written
// (job logs in `sweep status`, names in report.md).
std::string escape_controls(const std::string& s);

}  // namespace undo
