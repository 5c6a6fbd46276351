#include "cache/h5.h"

#include <mutex>

#include "core/error.h"

namespace undo::h5 {

void quiet_errors() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

std::string last_error() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        auto* s = static_cast<std::string*>(out);
        if (!s->empty()) *s += "; ";
        *s += e->desc ? e->desc : "";
        return n >= 2 ? 1 : 0;  // the outermost few are enough
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? "(no HDF5 message)" : msg;
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

Handle float16_type() {
  hid_t t = H5_CHECK(H5Tcopy(H5T_IEEE_F32LE), "copy float type");
  Handle h(t, H5Tclose);
  H5_CHECK(H5Tset_fields(t, 15, 10, 5, 0, 10), "float16 fields");
  H5_CHECK(H5Tset_size(t, 2), "float16 size");
  H5_CHECK(H5Tset_ebias(t, 15), "float16 exponent bias");
  return h;
}

Handle fixed_string_type(size_t size) {
  Handle h(H5_CHECK(H5Tcopy(H5T_C_S1), "copy string type"), H5Tclose);
  H5_CHECK(H5Tset_size(h, size == 0 ? 1 : size), "string size");
  H5_CHECK(H5Tset_strpad(h, H5T_STR_NULLPAD), "string padding");
  return h;
}

void write_attr(hid_t obj, const std::string& name, const std::string& value) {
  auto type = fixed_string_type(value.size());
  Handle space(H5_CHECK(H5Screate(H5S_SCALAR), "scalar space"), H5Sclose);
  Handle attr(H5_CHECK(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "create attribute ", name),
              H5Aclose);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  H5_CHECK(H5Awrite(attr, type, padded.data()), "write attribute ", name);
}

void write_attr(hid_t obj, const std::string& name, int64_t value) {
  Handle space(H5_CHECK(H5Screate(H5S_SCALAR), "scalar space"), H5Sclose);
  Handle attr(H5_CHECK(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT),
                       "create attribute ", name),
              H5Aclose);
  H5_CHECK(H5Awrite(attr, H5T_NATIVE_INT64, &value), "write attribute ", name);
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_string_attr(hid_t obj, const std::string& name) {
  Handle attr(H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute ", name), H5Aclose);
  Handle type(H5_CHECK(H5Aget_type(attr), "attribute type ", name), H5Tclose);
  UNDO_CHECK(H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type), "attribute ", name,
             " is not a fixed-length string");
  std::string out(H5Tget_size(type), '\0');
  H5_CHECK(H5Aread(attr, type, out.data()), "read attribute ", name);
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

int64_t read_int_attr(hid_t obj, const std::string& name) {
  Handle attr(H5_CHECK(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "open attribute ", name), H5Aclose);
  int64_t v = 0;
  H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, &v), "read attribute ", name);
  return v;
}

std::vector<hsize_t> dims_of(hid_t dataset) {
  Handle space(H5_CHECK(H5Dget_space(dataset), "dataset space"), H5Sclose);
  int rank = H5_CHECK(H5Sget_simple_extent_ndims(space), "dataset rank");
  std::vector<hsize_t> dims(size_t(rank), 0);
  H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr), "dataset dims");
  return dims;
}

Handle select_rows(hid_t dataset, uint64_t first, uint64_t n) {
  Handle space(H5_CHECK(H5Dget_space(dataset), "dataset space"), H5Sclose);
  auto dims = dims_of(dataset);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = first;
  count[0] = n;
  H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "select rows ",
           first, "..", first + n);
  return space;
}

Handle memory_space(const std::vector<hsize_t>& dims) {
  return Handle(H5_CHECK(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "memory space"), H5Sclose);
}

}  // namespace undo::h5
