#include "core/owned_output.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"

namespace undo {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLedger = ".undo-outputs";

std::string parent_of(const std::string& path) {
  std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

void write_ledger(const std::string& dir, std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string list;
  for (auto& n : names) list += (list.empty() ? "" : ", ") + json_escape(n);
  JsonObject o;
  o.add("written_by", "undo").add_raw("files", "[" + list + "]");
  write_file_atomic(join_path(dir, kLedger), o.str() + "\n");
}

// An exclusive flock on a directory itself (Linux allows flock on a directory's
// descriptor), so that two writers of outputs in one directory update its
// ledger one after the other, and no lock file is left beside the outputs.
class DirectoryLock {
 public:
  explicit DirectoryLock(const std::string& dir) : fd_(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    UNDO_CHECK(fd_ >= 0, "cannot open the directory '", dir, "': ", std::strerror(errno));
    while (::flock(fd_, LOCK_EX) != 0) UNDO_CHECK(errno == EINTR, "cannot lock '", dir, "': ", std::strerror(errno));
  }
  ~DirectoryLock() { ::close(fd_); }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_;
};

// The entries of DIR (but its ledger), by name.
std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != kLedger) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

mode_t umask_mode() {
  mode_t mask = ::umask(0);
  ::umask(mask);
  return 0777 & ~mask;
}

std::string make_private_dir_beside(const std::string& dir, const char* what) {
  std::string pattern = dir + "." + what + ".XXXXXX";  // mkdtemp: a fresh name, created by us alone
  UNDO_CHECK(::mkdtemp(pattern.data()) != nullptr, "cannot create a directory next to '", dir, "': ",
             std::strerror(errno));
  return pattern;
}

}  // namespace

std::vector<std::string> recorded_outputs(const std::string& dir) {
  const std::string path = join_path(dir, kLedger);
  if (!file_exists(path)) return {};
  std::vector<std::string> names;
  const JsonValue ledger = read_json_file(path);  // held: the loop reads into it
  for (auto& v : ledger.at("files").array()) {
    const std::string& name = v.string();
    UNDO_INPUT_CHECK(!name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos, path,
                     ": '", name, "' is not a file name");
    names.push_back(name);
  }
  return names;
}

void check_output_is_not_an_input(const std::string& key, const std::string& out,
                                  const std::vector<std::string>& inputs) {
  std::error_code ec;
  const fs::path target = fs::weakly_canonical(fs::absolute(out), ec);
  if (ec) return;  // an output path that cannot be resolved is refused by its writer
  for (auto& input : inputs) {
    if (input.empty() || !fs::exists(input, ec)) continue;
    const fs::path in = fs::canonical(input, ec);
    if (ec) continue;
    UNDO_INPUT_CHECK(in != target, key, " = '", out, "' is the input '", input, "': nothing was written");
    auto rel = in.lexically_relative(target);
    UNDO_INPUT_CHECK(rel.empty() || *rel.begin() == "..", key, " = '", out, "' holds the input '", input,
                     "', which writing there would replace: nothing was written");
  }
}

void write_output_file(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string dir = parent_of(path);
  make_dirs(dir);
  DirectoryLock lock(dir);
  std::vector<std::string> names = recorded_outputs(dir);
  const std::string name = fs::path(path).filename().string();
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec)))
    UNDO_INPUT_CHECK(fs::is_regular_file(fs::symlink_status(path, ec)) && contains(names, name), "'", path,
                     "' exists and undo did not write it: nothing was written (name another output, or move "
                     "it away yourself)");
  write(path);
  if (!contains(names, name)) {
    names.push_back(name);
    write_ledger(dir, names);
  }
}

void write_output_file(const std::string& path, std::string_view bytes) {
  write_output_file(path, [&](const std::string& p) { write_file_atomic(p, bytes); });
}

OutputDirectory::OutputDirectory(std::string key, std::string dir) : key_(std::move(key)), dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  check_replaceable();
  make_dirs(parent_of(dir_));
  staging_ = make_private_dir_beside(dir_, "tmp");
}

OutputDirectory::~OutputDirectory() {
  std::error_code ec;
  if (!committed_) fs::remove_all(staging_, ec);
}

void OutputDirectory::check_replaceable() const {
  std::error_code ec;
  auto st = fs::symlink_status(dir_, ec);
  if (!fs::exists(st)) return;
  UNDO_INPUT_CHECK(fs::is_directory(st), key_, " = '", dir_, "' exists and is not a directory (",
                   fs::is_symlink(st) ? "a symbolic link" : "a file", "): nothing was written; name another");
  if (file_exists(join_path(dir_, kLedger))) return;
  auto names = entries_of(dir_);
  UNDO_INPUT_CHECK(names.empty(), key_, " = '", dir_, "' holds files that undo did not write ('", names.front(),
                   "' and ", names.size() - 1, " more) and no record of an earlier undo output: nothing was "
                   "written; name another directory, or remove it yourself");
}

void OutputDirectory::commit() {
  UNDO_CHECK(!committed_, "OutputDirectory::commit twice");
  const auto produced = entries_of(staging_);
  write_ledger(staging_, produced);
  DirectoryLock lock(parent_of(dir_));
  check_replaceable();  // again: the directory may have changed while the output was made
  const bool existed = fs::exists(fs::symlink_status(dir_));
  std::vector<std::string> keep;  // the user's entries in the old directory
  if (existed) {
    const auto ours = recorded_outputs(dir_);
    for (auto& name : entries_of(dir_))
      if (!contains(ours, name)) {
        UNDO_INPUT_CHECK(!contains(produced, name), key_, " = '", dir_, "': '", name, "' there was not written by "
                         "undo and has the name of a new output: nothing was replaced (move it away yourself)");
        keep.push_back(name);
      }
  }
  struct stat old_stat {};
  const mode_t mode = existed && ::stat(dir_.c_str(), &old_stat) == 0 ? (old_stat.st_mode & 07777) : umask_mode();
  UNDO_CHECK(::chmod(staging_.c_str(), mode) == 0, "cannot set the mode of '", staging_, "': ", std::strerror(errno));
  if (!existed) {
    UNDO_CHECK(::rename(staging_.c_str(), dir_.c_str()) == 0, "cannot move the new output into '", dir_, "': ",
               std::strerror(errno));
    committed_ = true;
    return;
  }
  // Swap: the old directory goes aside (rename onto a fresh empty directory),
  // the new one takes its name, and the user's entries move across one rename
  // each, so at every moment each of them is in one of the two directories.
  const std::string aside = make_private_dir_beside(dir_, "old");
  UNDO_CHECK(::rename(dir_.c_str(), aside.c_str()) == 0, "cannot move '", dir_, "' aside: ", std::strerror(errno));
  if (::rename(staging_.c_str(), dir_.c_str()) != 0) {
    const int err = errno;
    UNDO_CHECK(::rename(aside.c_str(), dir_.c_str()) == 0, "cannot move the new output into '", dir_, "' (",
               std::strerror(err), "), and the old one is now at '", aside, "'");
    UNDO_CHECK(false, "cannot move the new output into '", dir_, "': ", std::strerror(err));
  }
  committed_ = true;
  for (auto& name : keep)
    if (::rename(join_path(aside, name).c_str(), join_path(dir_, name).c_str()) != 0)
      std::cerr << "warning: could not move '" << name << "' into the new '" << dir_ << "': it is at '" << aside
                << "/" << name << "'\n";
  for (auto& name : recorded_outputs(aside)) fs::remove_all(join_path(aside, name));
  fs::remove(join_path(aside, kLedger));
  std::error_code ec;
  if (!fs::remove(aside, ec))
    std::cerr << "warning: '" << aside << "' still holds files that were in '" << dir_ << "'; nothing was removed\n";
}

}  // namespace undo
