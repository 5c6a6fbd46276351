#include "results/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace undo {

namespace {

// Colour-blind-safe palette (Okabe-Ito), then greys.
const uint32_t kPalette[] = {0x0072B2, 0xD55E00, 0x009E73, 0xCC79A7, 0xE69F00, 0x56B4E9, 0xF0E442, 0x000000,
                             0x999999, 0x666666};
uint32_t colour(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }
std::string hex(uint32_t c) {
  char b[8];
  std::snprintf(b, sizeof b, "#%06X", c);
  return b;
}

// Plot area and data-to-pixel mapping.
struct Frame {
  int width, height, left = 80, right = 230, top = 44, bottom = 56;
  double x0, x1, y0, y1;
  std::vector<double> xticks, yticks;
  double px(double x) const { return left + (x - x0) / (x1 - x0) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom); }
};

std::vector<double> nice_ticks(double lo, double hi) {
  double span = hi - lo, raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string tick_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

Frame make_frame(const Chart& c, int width, int height) {
  Frame f{};
  f.width = width, f.height = height;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (auto& s : c.series)
    for (size_t k = 0; k < s.points.size(); ++k) {
      auto [x, y] = s.points[k];
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      if (k < s.spread.size())  // a band or error bar stays inside the frame
        for (double e : {s.spread[k].first, s.spread[k].second})
          if (std::isfinite(e)) y0 = std::min(y0, e), y1 = std::max(y1, e);
    }
  for (auto& h : c.hlines)
    if (std::isfinite(h.y)) y0 = std::min(y0, h.y), y1 = std::max(y1, h.y);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  double py = 0.06 * (y1 - y0), px = 0.03 * (x1 - x0);
  f.x0 = x0 - px, f.x1 = x1 + px, f.y0 = y0 - py, f.y1 = y1 + py;
  f.xticks = nice_ticks(f.x0, f.x1);
  f.yticks = nice_ticks(f.y0, f.y1);
  return f;
}

bool finite(double x, double y) { return std::isfinite(x) && std::isfinite(y); }

}  // namespace

std::string render_svg(const Chart& c, int width, int height) {
  Frame f = make_frame(c, width, height);
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << width / 2 - f.right / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">" << xml_escape(c.title)
    << "</text>\n";
  for (double t : f.xticks)
    s << "<line x1=\"" << f.px(t) << "\" y1=\"" << f.top << "\" x2=\"" << f.px(t) << "\" y2=\"" << height - f.bottom
      << "\" stroke=\"#eee\"/><text x=\"" << f.px(t) << "\" y=\"" << height - f.bottom + 18
      << "\" text-anchor=\"middle\">" << tick_text(t) << "</text>\n";
  for (double t : f.yticks)
    s << "<line x1=\"" << f.left << "\" y1=\"" << f.py(t) << "\" x2=\"" << width - f.right << "\" y2=\"" << f.py(t)
      << "\" stroke=\"#eee\"/><text x=\"" << f.left - 8 << "\" y=\"" << f.py(t) + 4 << "\" text-anchor=\"end\">"
      << tick_text(t) << "</text>\n";
  s << "<rect x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << width - f.left - f.right << "\" height=\""
    << height - f.top - f.bottom << "\" fill=\"none\" stroke=\"#333\"/>\n";
  s << "<text x=\"" << (f.left + width - f.right) / 2 << "\" y=\"" << height - 14 << "\" text-anchor=\"middle\">"
    << xml_escape(c.xlabel) << "</text>\n<text transform=\"translate(18," << (f.top + height - f.bottom) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << xml_escape(c.ylabel) << "</text>\n";
  int legend_y = f.top + 8;
  auto legend = [&](const std::string& name, const std::string& col, bool dashed) {
    s << "<line x1=\"" << width - f.right + 14 << "\" y1=\"" << legend_y << "\" x2=\"" << width - f.right + 38
      << "\" y2=\"" << legend_y << "\" stroke=\"" << col << "\" stroke-width=\"3\"" << (dashed ? " stroke-dasharray=\"6 4\"" : "")
      << "/><text x=\"" << width - f.right + 44 << "\" y=\"" << legend_y + 4 << "\">" << xml_escape(name) << "</text>\n";
    legend_y += 20;
  };
  for (size_t i = 0; i < c.hlines.size(); ++i) {
    auto col = hex(colour(c.series.size() + i));
    s << "<line x1=\"" << f.left << "\" y1=\"" << f.py(c.hlines[i].y) << "\" x2=\"" << width - f.right << "\" y2=\""
      << f.py(c.hlines[i].y) << "\" stroke=\"" << col << "\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n";
    legend(c.hlines[i].name, col, true);
  }
  for (size_t i = 0; i < c.series.size(); ++i) {
    const auto& sr = c.series[i];
    auto col = hex(colour(i));
    const bool has_spread = sr.spread.size() == sr.points.size();
    auto spread_ok = [&](size_t k) {
      return has_spread && finite(sr.points[k].first, sr.spread[k].first) && finite(sr.points[k].first, sr.spread[k].second);
    };
    if (has_spread && sr.line) {  // the band: along the upper edge, back along the lower
      s << "<polygon fill=\"" << col << "\" fill-opacity=\"0.18\" stroke=\"none\" points=\"";
      for (size_t k = 0; k < sr.points.size(); ++k)
        if (spread_ok(k)) s << f.px(sr.points[k].first) << "," << f.py(sr.spread[k].second) << " ";
      for (size_t k = sr.points.size(); k-- > 0;)
        if (spread_ok(k)) s << f.px(sr.points[k].first) << "," << f.py(sr.spread[k].first) << " ";
      s << "\"/>\n";
    }
    if (has_spread && !sr.line)  // error bars
      for (size_t k = 0; k < sr.points.size(); ++k)
        if (spread_ok(k))
          s << "<line x1=\"" << f.px(sr.points[k].first) << "\" y1=\"" << f.py(sr.spread[k].first) << "\" x2=\""
            << f.px(sr.points[k].first) << "\" y2=\"" << f.py(sr.spread[k].second) << "\" stroke=\"" << col
            << "\" stroke-width=\"2\"/>\n";
    if (sr.line && sr.points.size() > 1) {
      s << "<polyline fill=\"none\" stroke=\"" << col << "\" stroke-width=\"2\" points=\"";
      for (auto& [x, y] : sr.points)
        if (finite(x, y)) s << f.px(x) << "," << f.py(y) << " ";
      s << "\"/>\n";
    }
    for (size_t k = 0; k < sr.points.size(); ++k) {
      auto [x, y] = sr.points[k];
      if (!finite(x, y)) continue;  // not measured: nothing to draw
      if (sr.markers) s << "<circle cx=\"" << f.px(x) << "\" cy=\"" << f.py(y) << "\" r=\"5\" fill=\"" << col << "\"/>\n";
      if (k < sr.labels.size() && !sr.labels[k].empty())
        s << "<text x=\"" << f.px(x) + 8 << "\" y=\"" << f.py(y) - 6 << "\">" << xml_escape(sr.labels[k]) << "</text>\n";
    }
    legend(sr.name, col, false);
  }
  s << "</svg>\n";
  return s.str();
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += ch;
    }
  }
  return o;
}

}  // namespace undo
