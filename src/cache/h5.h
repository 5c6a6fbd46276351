// A thin RAII layer over the HDF5 C API: handles close themselves, and every
// failing call throws naming the file, the operation and our source line
// (HDF5's own error stack printing is turned off; its message is appended).
#pragma once
#include <hdf5.h>

#include "core/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace undo::h5 {

// Turns off HDF5's automatic error printing (once per process).
void quiet_errors();
// The innermost message of HDF5's current error stack ("" when empty).
std::string last_error();

// An owned hid_t closed with its type's close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset();
  // Gives up ownership without closing (for a close whose result is checked).
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

// float16 as HDF5 1.10 lacks it: IEEE half (sign 15, exponent 10..14 biased
// by 15, mantissa 0..9), little-endian. h5py reads it as numpy float16. Data
// is converted to half in torch and written as raw bits, without conversion.
Handle float16_type();
Handle fixed_string_type(size_t size);

void write_attr(hid_t obj, const std::string& name, const std::string& value);
void write_attr(hid_t obj, const std::string& name, int64_t value);
std::string read_string_attr(hid_t obj, const std::string& name);
int64_t read_int_attr(hid_t obj, const std::string& name);
bool has_attr(hid_t obj, const std::string& name);

// Selects rows [first, first + n) of a dataset whose other dims are taken whole.
Handle select_rows(hid_t dataset, uint64_t first, uint64_t n);
Handle memory_space(const std::vector<hsize_t>& dims);
std::vector<hsize_t> dims_of(hid_t dataset);

}  // namespace undo::h5

// H5_CHECK(call, "what", path): throws RuntimeError when an HDF5 call fails
// (a negative return), naming `what`, the file and HDF5's message.
#define H5_CHECK(call, ...)                                                                       \
  ([&]() {                                                                                        \
    auto h5_result_ = (call);                                                                     \
    if (h5_result_ < 0)                                                                           \
      ::undo::detail::fail<::undo::RuntimeError>(__FILE__, __LINE__, "HDF5: ", __VA_ARGS__, ": ", \
                                                 ::undo::h5::last_error());                       \
    return h5_result_;                                                                            \
  }())
