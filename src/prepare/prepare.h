// `undo data prepare`: from fetched packages (and/or plain-text dirs) to a
// prepared data directory: tokenizer.model, <stream>.{train,val}.bin, manifest.json.
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace undo {

struct Document {
  std::string source;  // package or directory it came from
  std::string text;
};

// English documents from DataConfig::sources (see data/fetch) and english_dirs, uncapped.
std::vector<Document> collect_english(const DataConfig& cfg);
// The forget language's documents (data.forget_*): lines mostly in its script
// and not also in `english`, one document per file, capped at max_text_bytes.
std::vector<Document> collect_forget_language(const DataConfig& cfg, const std::vector<Document>& english);

// Runs the whole preparation. Returns false when DIR already holds a
// preparation of the same inputs and settings (nothing is redone).
bool prepare_data(const Config& cfg);

}  // namespace undo
