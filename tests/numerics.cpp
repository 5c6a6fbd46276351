#include "numerics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace undo::test {
namespace {

std::string fixed(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

// The share of its tolerance a comparison used, appended to UNDO_NUMERICS_LOG
// (one line: test, what, share, derivation) for tests/numerics-report.
void record(const std::string& what, double used, const Tolerance& tol) {
  const char* log = std::getenv("UNDO_NUMERICS_LOG");
  if (!log || !*log) return;
  auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "global";
  std::ofstream(log, std::ios::app) << test << '\t' << what << '\t' << used << '\t' << tol.why << '\n';
}

double allowed(double reference, const Tolerance& tol) { return tol.rel * std::max(std::abs(reference), tol.scale); }

}  // namespace

Tolerance fp32_reordered(int64_t longest_sum, int depth, double scale) {
  const double rel = double(longest_sum + kElementwiseUnits) * kFp32Unit * std::max(1, depth);
  return {rel, scale,
          "fp32, sums of <= " + std::to_string(longest_sum) + " terms in another order, " + std::to_string(depth) +
              " stage(s): (n + 16) u depth = " + fixed(rel) +
              (scale > 0 ? " of max(|value|, " + fixed(scale) + ")" : "")};
}

Tolerance bf16_rounded(int depth, double scale) {
  const double rel = kBf16Unit * std::max(1, depth);
  return {rel, scale,
          "bf16 outputs a unit apart where the fp32 order differs, " + std::to_string(depth) +
              " stage(s): u_bf16 depth = " + fixed(rel) + (scale > 0 ? " of max(|value|, " + fixed(scale) + ")" : "")};
}

void expect_curves_match(const std::vector<double>& a, const std::vector<double>& b, const Tolerance& tol,
                         const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  double used = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double limit = allowed(a[i], tol), diff = std::abs(a[i] - b[i]);
    used = std::max(used, limit > 0 ? diff / limit : (diff > 0 ? INFINITY : 0));
    EXPECT_LE(diff, limit) << what << ", step " << i + 1 << ": " << a[i] << " against " << b[i] << " (" << tol.why
                           << ")";
  }
  record(what, used, tol);
}

void expect_value_near(double reference, double value, const Tolerance& tol, const std::string& what) {
  const double limit = allowed(reference, tol), diff = std::abs(reference - value);
  EXPECT_LE(diff, limit) << what << ": " << reference << " against " << value << " (" << tol.why << ")";
  record(what, limit > 0 ? diff / limit : (diff > 0 ? INFINITY : 0), tol);
}

void expect_tensors_close(const torch::Tensor& reference, const torch::Tensor& value, const Tolerance& tol,
                          const std::string& what) {
  ASSERT_EQ(reference.sizes(), value.sizes()) << what;
  auto a = reference.to(torch::kDouble), b = value.to(torch::kDouble);
  const double diff = (a - b).abs().max().item<double>();
  // Norm-wise: the largest difference against the largest magnitude (a weight
  // near 0 errs as the sums that made it do, not relative to itself).
  const double limit = allowed(a.abs().max().item<double>(), tol);
  EXPECT_LE(diff, limit) << what << ": max |difference| " << diff << " (" << tol.why << ")";
  record(what, limit > 0 ? diff / limit : (diff > 0 ? INFINITY : 0), tol);
}

}  // namespace undo::test
