// A question file's tokens (data/mcq.h), made by undo-data, which has the
// tokenizer, for the evaluator, which has the model: each context encoded
// alone and each choice as what "context + continuation" adds to it, the way
// lm-evaluation-harness splits a context and a continuation for a causal
// model (the whole encoded, then cut at the context's length), so that undo
// and the harness score the same tokens.
#pragma once
#include <string>
#include <vector>

#include "data/mcq.h"
#include "prepare/text_tokenizer.h"

namespace undo {

// InputError naming the file, line and choice where a choice adds no tokens.
std::vector<McqTokens> tokenize_mcq(const std::vector<McqQuestion>& questions, const TextTokenizer& tok,
                                    const std::string& file);

// `undo data mcq --data.dir DIR --questions FILE --out TOKENS`: FILE's tokens
// by DIR's tokenizer, written to TOKENS (what `undo eval --mcq` runs).
void tokenize_mcq_file(const std::string& data_dir, const std::string& questions, const std::string& out);

}  // namespace undo
