#include "sweep/spec.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/unlearning_methods.h"
#include "results/attack_curve.h"
#include "results/support.h"

namespace undo {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

int to_int(const std::string& where, const std::string& v, int lo) {
  return int(parse_integer(where, v, lo, std::numeric_limits<int>::max()));
}

constexpr const char* kSamSuffix = "+sam";

std::string teacher_names() { return unlearning_method_names(", ") + ", each also as METHOD+sam"; }

using Overrides = std::vector<std::pair<std::string, std::string>>;

// A key given twice: the later value wins, as in the stages' own INI files.
void set_override(Overrides& o, const std::string& key, const std::string& value) {
  auto same = std::find_if(o.begin(), o.end(), [&](const auto& kv) { return kv.first == key; });
  if (same != o.end()) same->second = value;
  else o.emplace_back(key, value);
}

// The config the stages would parse: the setting's file, then the overrides. They must be keys the
// stages accept, with valid values: checked now, not in job 17.
Config parse_overridden(const std::string& path, const std::string& config, const Overrides& overrides) {
  std::vector<std::string> args = {"sweep", "--config", config};
  for (auto& [k, v] : overrides) args.insert(args.end(), {k, v});
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  Config cfg;
  try {
    parse_config(int(argv.size()), argv.data(), "sweep", cfg);
  } catch (const InputError& e) {
    throw InputError(path + ": " + e.what());
  }
  return cfg;
}

}  // namespace

DistillSignal parse_distill_signal(const std::string& where, const std::string& text) {
  DistillSignal s;
  s.name = text;
  if (text == "online") {
    s.online = true;
    return s;
  }
  const std::string what = where + " (" + text + ")";
  const auto colon = text.find(':');
  const std::string shape = text.substr(0, colon);
  if (colon != std::string::npos) {
    s.dtype = text.substr(colon + 1);
    UNDO_INPUT_CHECK(s.dtype == "f32" || s.dtype == "f16" || s.dtype == "q8", where, ": distillation signal '", text,
                     "' has dtype '", s.dtype, "' (f32 | f16 | q8)");
  }
  auto plus = shape.find("+s");
  if (shape.rfind("s", 0) == 0 && shape.size() > 1) {  // pure sampling
    s.samples = int(parse_integer(what, shape.substr(1), 1, 4096));
    return s;
  }
  UNDO_INPUT_CHECK(shape.rfind("top", 0) == 0 && shape.size() > 3, where, ": distillation signal '", text,
                   "' is not online, top<k>, top<k>+s<n> or s<n> (each cache format optionally :f32, :f16 or :q8)");
  s.k = int(parse_integer(what, shape.substr(3, plus == std::string::npos ? std::string::npos : plus - 3), 1, 1 << 20));
  if (plus != std::string::npos) s.samples = int(parse_integer(what, shape.substr(plus + 2), 0, 4096));
  return s;
}

std::string replicates_vary(const SweepSpec& spec) {
  if (spec.replicates == 1) return kStudentSeedVaries;
  return spec.replicate_shared == "base_oracle" ? kAllButBaseOracleVaries : kEveryStageVaries;
}

double planned_job_count(const SweepSpec& spec) {
  const double signals = double(spec.signals.empty() ? 1 : spec.signals.size()), seeds = double(spec.seeds.size());
  const double students = double(spec.distill_methods.size()) * signals * seeds * double(spec.alphas.size()) *
                          double(spec.betas.empty() ? 1 : spec.betas.size());
  const double models = 2 + double(spec.methods.size()) + students + double(spec.controls.size()) * seeds;
  const double caches = signals * double(spec.methods.size() + spec.controls.size());
  return double(spec.replicates) * (models * (1 + double(spec.attack_lrs.size())) + caches);
}

SweepSpec read_sweep_spec(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "sweep spec '", path, "' does not exist");
  SweepSpec spec;
  spec.path = path;
  std::ifstream in(path);
  std::string line, section;
  bool cache_given = false;
  std::string distill_where;
  std::map<std::string, std::string> method_where;  // the [unlearn.<method>] headers, for errors
  using Setter = std::function<void(const std::string& where, const std::string& value)>;
  std::map<std::string, Setter> keys = {
      {"sweep.config", [&](auto&, auto& v) { spec.config = v; }},
      {"sweep.methods",
       [&](auto& w, auto& v) {
         spec.methods = split_list(v);
         for (auto& m : spec.methods)
           UNDO_INPUT_CHECK(is_sweep_teacher(m), w, ": unknown method '", m, "' (methods: ", teacher_names(), ")");
       }},
      {"sweep.distill_methods", [&](auto& w, auto& v) {
         spec.distill_methods = split_list(v);
         distill_where = w;
       }},
      {"sweep.alphas", [&](auto& w, auto& v) {
         spec.alphas = parse_number_list(w, v);
         for (double a : spec.alphas) UNDO_INPUT_CHECK(a > 0 && a <= 1, w, ": alpha ", a, " outside (0, 1]");
       }},
      {"sweep.betas", [&](auto& w, auto& v) {
         spec.betas = parse_number_list(w, v);
         for (double b : spec.betas) UNDO_INPUT_CHECK(b >= 0 && b <= 1, w, ": beta ", b, " outside [0, 1]");
       }},
      {"sweep.seeds", [&](auto& w, auto& v) {
         // Whole numbers in range, read as integers (through a double, 1e20
         // became INT64_MIN and 1.5 became 1). The bound leaves room for the
         // 1000 r offset of each replicate.
         spec.seeds.clear();
         for (auto& item : split_list(v)) spec.seeds.push_back(parse_integer(w, trim(item), 0, int64_t(1) << 53));
       }},
      {"sweep.replicates", [&](auto& w, auto& v) { spec.replicates = to_int(w, v, 1); }},
      {"sweep.replicate_shared", [&](auto& w, auto& v) {
         UNDO_INPUT_CHECK(v == "none" || v == "base_oracle", w, ": '", v, "' (none | base_oracle)");
         spec.replicate_shared = v;
       }},
      {"sweep.controls", [&](auto& w, auto& v) {
         spec.controls = v == "none" ? std::vector<std::string>() : split_list(v);
         for (auto& c : spec.controls)
           UNDO_INPUT_CHECK(c == "base" || c == "oracle", w, ": control '", c, "' (base | oracle, or none)");
       }},
      {"sweep.attack_lrs", [&](auto& w, auto& v) {
         spec.attack_lrs = parse_number_list(w, v);
         for (double lr : spec.attack_lrs) UNDO_INPUT_CHECK(lr > 0 && lr < 1, w, ": LR ", lr, " outside (0, 1)");
       }},
      {"sweep.attack_steps", [&](auto& w, auto& v) { spec.attack_steps = to_int(w, v, 1); }},
      {"sweep.attack_eval_every", [&](auto& w, auto& v) { spec.attack_eval_every = to_int(w, v, 1); }},
      {"sweep.ranks", [&](auto& w, auto& v) { spec.ranks = to_int(w, v, 1); }},
      {"sweep.threads", [&](auto& w, auto& v) { spec.threads = to_int(w, v, 1); }},
      {"sweep.cache", [&](auto& w, auto& v) { spec.cache = to_int(w, v, 0) != 0, cache_given = true; }},
      {"sweep.signals", [&](auto& w, auto& v) {
         spec.signals.clear();
         for (auto& name : split_list(v)) {
           auto signal = parse_distill_signal(w, name);
           for (auto& other : spec.signals) UNDO_INPUT_CHECK(other.name != name, w, ": signal '", name, "' twice");
           spec.signals.push_back(signal);
         }
       }},
      {"sweep.metric", [&](auto& w, auto& v) {
         const auto& known = forget_metrics();
         UNDO_INPUT_CHECK(v == "auto" || std::find(known.begin(), known.end(), v) != known.end(), w, ": metric '", v,
                          "' (auto | forget_acc | forget_answer_ce | forget_ce)");
         spec.metric = v;
       }},
      {"sweep.prepare_data", [&](auto& w, auto& v) { spec.prepare_data = to_int(w, v, 0) != 0; }},
      {"sweep.cache_root", [&](auto& w, auto& v) {
         UNDO_INPUT_CHECK(!v.empty(), w, ": cache_root is empty (leave it out for OUT/cache)");
         spec.cache_root = v;
       }},
      {"slurm.partition", [&](auto&, auto& v) { spec.slurm.partition = v; }},
      {"slurm.account", [&](auto&, auto& v) { spec.slurm.account = v; }},
      {"slurm.time", [&](auto&, auto& v) { spec.slurm.time = v; }},
      {"slurm.nodes", [&](auto& w, auto& v) { spec.slurm.nodes = to_int(w, v, 1); }},
      {"slurm.max_parallel", [&](auto& w, auto& v) { spec.slurm.max_parallel = to_int(w, v, 1); }},
      {"slurm.signal_s", [&](auto& w, auto& v) { spec.slurm.signal_s = to_int(w, v, 0); }},
      {"slurm.lost_rank_requeues", [&](auto& w, auto& v) { spec.slurm.lost_rank_requeues = to_int(w, v, 0); }},
      {"slurm.extra", [&](auto&, auto& v) { spec.slurm.extra = v; }},
  };
  std::map<std::string, std::string> given_at;  // key -> where, so that a key given twice is refused
  for (int n = 1; std::getline(in, line); ++n) {
    auto t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    std::string where = path + ":" + std::to_string(n);
    if (t.front() == '[') {
      UNDO_INPUT_CHECK(t.back() == ']', where, ": bad section header '", t, "'");
      section = trim(t.substr(1, t.size() - 2));
      if (section.rfind("unlearn.", 0) == 0) {
        auto m = section.substr(8);
        UNDO_INPUT_CHECK(is_sweep_teacher(m), where, ": [", section, "]: unknown method '", m,
                         "' (a section [unlearn.<method>] sets one teacher's keys; methods: ", teacher_names(), ")");
        method_where.emplace(m, where);
        spec.method_overrides[m];  // an empty section still names a method, checked below
      }
      continue;
    }
    auto eq = t.find('=');
    UNDO_INPUT_CHECK(eq != std::string::npos && !section.empty(), where, ": expected 'key = value' inside a [section]");
    auto key = section + "." + trim(t.substr(0, eq));
    auto value = trim(t.substr(eq + 1));
    if (auto hash = value.find(" #"); hash != std::string::npos) value = trim(value.substr(0, hash));
    if (auto semi = value.find(" ;"); semi != std::string::npos) value = trim(value.substr(0, semi));
    // Given twice, which one did the author mean? (The later used to win silently.)
    auto [first, fresh] = given_at.emplace(key, where);
    UNDO_INPUT_CHECK(fresh, where, ": '", key, "' is given twice (first at ", first->second, ")");
    if (section == "sweep" || section == "slurm") {
      auto it = keys.find(key);
      UNDO_INPUT_CHECK(it != keys.end(), where, ": unknown sweep key '", key, "'");
      it->second(where + ": " + key, value);
    } else if (section.rfind("unlearn.", 0) == 0) {
      auto m = section.substr(8);
      auto name = trim(t.substr(0, eq));
      UNDO_INPUT_CHECK(name != "method", where, ": [", section, "] cannot set method (the section names it)");
      set_override(spec.method_overrides[m], "--unlearn." + name, value);
    } else {
      set_override(spec.overrides, "--" + key, value);
    }
  }
  UNDO_INPUT_CHECK(!spec.config.empty(), path, ": [sweep] config = FILE is required");
  UNDO_INPUT_CHECK(file_exists(spec.config), path, ": sweep.config '", spec.config, "' does not exist");
  UNDO_INPUT_CHECK(!spec.methods.empty() && !spec.alphas.empty() && !spec.seeds.empty() && !spec.attack_lrs.empty(),
                   path, ": methods, alphas, seeds and attack_lrs must not be empty");
  spec.cfg = parse_overridden(path, spec.config, spec.overrides);
  for (auto& [m, list] : spec.method_overrides) {
    UNDO_INPUT_CHECK(std::find(spec.methods.begin(), spec.methods.end(), m) != spec.methods.end(), method_where[m],
                     ": [unlearn.", m, "] but '", m, "' is not one of sweep.methods");
    Overrides merged = spec.overrides;  // what the method's job is given: its own keys replace the general ones
    for (auto& [k, v] : list) set_override(merged, k, v);
    spec.method_cfg[m] = parse_overridden(path + " [unlearn." + m + "]", spec.config, merged);
  }
  // METHOD+sam runs SAM, and beside it the plain METHOD must not (they would be one teacher twice).
  auto sam_rho_of = [&](const std::string& m) {
    auto own = spec.method_cfg.find(m);
    return (own != spec.method_cfg.end() ? own->second : spec.cfg).unlearn.sam_rho;
  };
  for (auto& m : spec.methods) {
    if (!teacher_uses_sam(m)) continue;
    UNDO_INPUT_CHECK(sam_rho_of(m) > 0, path, ": teacher '", m, "' runs SAM but its unlearn.sam_rho is 0: set ",
                     "sam_rho = R (paper 0.01-0.05) in [unlearn.", m, "]");
    const std::string plain = teacher_method(m);
    UNDO_INPUT_CHECK(std::find(spec.methods.begin(), spec.methods.end(), plain) == spec.methods.end() ||
                         sam_rho_of(plain) == 0,
                     path, ": teachers '", plain, "' and '", m, "' would both run SAM (unlearn.sam_rho = ",
                     sam_rho_of(plain), " for '", plain, "'): give the radius in [unlearn.", m, "] alone");
  }
  for (auto& m : spec.distill_methods)
    UNDO_INPUT_CHECK(std::find(spec.methods.begin(), spec.methods.end(), m) != spec.methods.end(), distill_where,
                     ": '", m, "' is not one of sweep.methods");
  if (spec.distill_methods.empty()) spec.distill_methods = spec.methods;
  UNDO_INPUT_CHECK(!(cache_given && !spec.signals.empty()), path,
                   ": sweep.cache and sweep.signals both given (signals names the cache of each: top<k>, or online)");
  if (spec.signals.empty()) {  // the one signal `cache` and the config name
    const auto& d = spec.cfg.distill;
    const std::string shape = d.cache_k == 0 ? "s" + std::to_string(d.cache_samples)
                              : "top" + std::to_string(d.cache_k) +
                                    (d.cache_samples ? "+s" + std::to_string(d.cache_samples) : "");
    spec.signals.push_back(parse_distill_signal(path, !spec.cache ? "online" : shape));
  }
  const bool arith_metric = spec.metric == "forget_acc" || spec.metric == "forget_answer_ce";
  UNDO_INPUT_CHECK(!arith_metric || (spec.cfg.data.setting == "arith" && spec.cfg.eval.arith_per_op > 0), path,
                   ": sweep.metric = ", spec.metric,
                   " scores arithmetic problems: it needs data.setting = arith and eval.arith_per_op > 0");
  UNDO_INPUT_CHECK(spec.metric != "forget_mcq_acc" || !spec.cfg.data.forget_mcq.empty(), path,
                   ": sweep.metric = forget_mcq_acc scores the questions of data.forget_mcq, which names none");
  const double jobs = planned_job_count(spec);
  UNDO_INPUT_CHECK(jobs <= kMaxPlannedJobs, path, ": the grid makes about ", int64_t(jobs), " jobs (methods x ",
                   "signals x seeds x alphas x betas x replicates, each attacked at every LR), more than the ",
                   int64_t(kMaxPlannedJobs), " a sweep may plan: split it into several sweeps");
  return spec;
}

bool teacher_uses_sam(const std::string& teacher) {
  const std::string suffix = kSamSuffix;
  return teacher.size() > suffix.size() && teacher.compare(teacher.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string teacher_method(const std::string& teacher) {
  return teacher_uses_sam(teacher) ? teacher.substr(0, teacher.size() - std::string(kSamSuffix).size()) : teacher;
}

bool is_sweep_teacher(const std::string& teacher) { return is_unlearning_method(teacher_method(teacher)); }

}  // namespace undo
