#include "cache/cache_catalog.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/fs.h"
#include "core/json_value.h"

namespace undo {

namespace fs = std::filesystem;

namespace {

bool is_index_name(const std::string& name) {
  return name.rfind("logits-", 0) == 0 && name.size() > 3 && name.compare(name.size() - 3, 3, ".h5") == 0;
}

std::string canonical_or_self(const std::string& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? p : c.string();
}

// The files of the cache at `index`: itself, PATH.json, PATH.lock and its parts.
std::vector<std::string> files_of(const std::string& index) {
  std::vector<std::string> out;
  const fs::path p(index);
  const std::string name = p.filename().string();
  for (auto& e : fs::directory_iterator(p.parent_path())) {
    const std::string f = e.path().filename().string();
    if (f == name || f == name + ".json" || f == name + ".lock" || f.rfind(name + ".part", 0) == 0)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// For each run directory under `root`: the cache its summary.json says it read
// (teacher_logits), and, for a sweep job not done, its --distill.cache_dir.
struct Readers {
  std::map<std::string, std::vector<std::string>> read;    // cache path -> run dirs
  std::map<std::string, std::vector<std::string>> needed;  // cache dir -> unfinished jobs
};

std::string cache_dir_of_job(const std::string& cmd) {
  const std::string flag = "'--distill.cache_dir' '";
  auto at = cmd.find(flag);
  if (at == std::string::npos) return "";
  at += flag.size();
  return cmd.substr(at, cmd.find('\'', at) - at);
}

Readers find_readers(const std::string& root) {
  Readers r;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string f = it->path().filename().string();
    const std::string dir = it->path().parent_path().string();
    if (f == "summary.json") {
      try {
        auto j = parse_json(read_file(it->path().string()), it->path().string());
        if (auto* t = j.find("teacher_logits"); t && t->is_string() && t->string() != "online")
          r.read[canonical_or_self(t->string())].push_back(dir);
      } catch (const std::exception&) {
        // A summary being written or not ours: it names no cache.
      }
    } else if (f == "cmd.sh" && !file_exists(dir + "/job.done")) {
      auto cache_dir = cache_dir_of_job(read_file(it->path().string()));
      if (!cache_dir.empty()) r.needed[canonical_or_self(cache_dir)].push_back(dir);
    }
  }
  return r;
}

}  // namespace

std::vector<CacheEntry> find_caches(const std::string& root) {
  std::vector<CacheEntry> out;
  if (!fs::is_directory(root)) return out;
  const Readers readers = find_readers(root);
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file() || !is_index_name(it->path().filename().string())) continue;
    CacheEntry e;
    e.path = it->path().string();
    e.files = files_of(e.path);
    for (auto& f : e.files) e.bytes += fs::file_size(f);
    struct stat st {};
    if (::stat(e.path.c_str(), &st) == 0) e.created = int64_t(st.st_mtime);
    try {
      LogitCacheReader reader(e.path);
      e.key = reader.key();
      e.rows = reader.rows();
    } catch (const std::exception& ex) {
      e.problem = ex.what();
    }
    const std::string canon = canonical_or_self(e.path);
    if (auto f = readers.read.find(canon); f != readers.read.end()) e.read_by = f->second;
    if (auto f = readers.needed.find(canonical_or_self(it->path().parent_path().string())); f != readers.needed.end())
      e.needed_by = f->second;
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const CacheEntry& a, const CacheEntry& b) { return a.path < b.path; });
  return out;
}

}  // namespace undo
