// Line and scatter charts rendered two ways without a plotting library: SVG
// (text, crisp) and PNG (our own rasteriser, a 3x5 pixel font scaled up, and a
// minimal PNG encoder with stored deflate blocks).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace undo {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;
  bool line = true;      // join the points
  bool markers = false;  // draw a dot at each point
  std::vector<std::string> labels;  // optional text next to each point
  // Optional [lo, hi] of y at each point (NaN: none there): a shaded band under
  // a line, an error bar through a marker.
  std::vector<std::pair<double, double>> spread;
};

struct HLine {
  std::string name;
  double y;
};

struct Chart {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  std::vector<HLine> hlines;  // reference levels (dashed)
};

std::string render_svg(const Chart& chart, int width = 900, int height = 520);
// Text for SVG or HTML: & < > " as entities.
std::string xml_escape(const std::string& s);
// RGB PNG file bytes.
std::string render_png(const Chart& chart, int width = 900, int height = 520);

}  // namespace undo
