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

// Collects English and Korean documents from DataConfig::sources (see data/fetch).
std::vector<Document> collect_english(const DataConfig& cfg);
std::vector<Document> collect_korean(const DataConfig& cfg);

// Runs the whole preparation. Returns false when DIR already holds a
// preparation of the same inputs and settings (nothing is redone).
bool prepare_data(const Config& cfg);

}  // namespace undo
