// The corpora users bring, as `undo data prepare` reads them: each entry of
// data.english_dirs (retained text) and data.forget_dirs (forgotten text, which
// the unlearning and the attack also train on) is one of
//   DIR              every .txt file under it, one document each;
//   FILE.jsonl       one document a line, the line's string field
//                    data.jsonl_field ("text" unless told), as corpora ship;
//   mcq:FILE.jsonl   multiple-choice questions (data/mcq.h), each one
//                    document, rendered as its prompt and right answer.
// Bad input stops here, before anything is written: a missing path, a line
// that is not JSON or lacks the field, an entry with no document, each named
// by file and line.
#pragma once
#include <string>
#include <vector>

#include "prepare/prepare.h"

namespace undo {

// Appends the documents of every entry of the comma list `list`.
void add_corpora(const std::string& list, const std::string& text_field, std::vector<Document>& docs);

// The path an entry reads (for "an output is never an input").
std::string corpus_path(const std::string& entry);

// Every file the entries read, by sha256, for the preparation key: an edited
// corpus at the same path prepares again.
std::string corpora_fingerprint(const std::string& list);

}  // namespace undo
