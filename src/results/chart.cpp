#include "results/chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
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

// Plot area and data-to-pixel mapping shared by both renderers.
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
  Frame f{width, height};
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

// ---- PNG

// A 3x5 pixel font: rows top to bottom, '#' = ink. Lowercase is drawn as uppercase.
const std::map<char, const char*>& font() {
  static const std::map<char, const char*> f = {
      {'0', "####.##.##.####"}, {'1', ".#.##..#..#.###"}, {'2', "###..#####..###"}, {'3', "###..####..####"},
      {'4', "#.##.####..#..#"}, {'5', "####..###..####"}, {'6', "####..####.####"}, {'7', "###..#..#.#..#."},
      {'8', "####.#####.####"}, {'9', "####.####..####"}, {'A', ".#.#.#####.##.#"}, {'B', "##.#.###.#.###."},
      {'C', "####..#..#..###"}, {'D', "##.#.##.##.###."}, {'E', "####..##.#..###"}, {'F', "####..##.#..#.."},
      {'G', "####..#.##.####"}, {'H', "#.##.#####.##.#"}, {'I', "###.#..#..#.###"}, {'J', "..#..#..##.####"},
      {'K', "#.##.###.#.##.#"}, {'L', "#..#..#..#..###"}, {'M', "#.########.##.#"}, {'N', "##.#.##.##.##.#"},
      {'O', "####.##.##.####"}, {'P', "####.#####..#.."}, {'Q', "####.##.####..#"}, {'R', "##.#.###.#.##.#"},
      {'S', "####..###..####"}, {'T', "###.#..#..#..#."}, {'U', "#.##.##.##.####"}, {'V', "#.##.##.##.#.#."},
      {'W', "#.##.########.#"}, {'X', "#.##.#.#.#.##.#"}, {'Y', "#.##.#.#..#..#."}, {'Z', "###..#.#.#..###"},
      {'.', ".............#."}, {',', "..........#.#.."}, {'-', "......###......"}, {'+', "....#.###.#...."},
      {'=', "...###...###..."}, {':', "....#.....#...."}, {'/', "..#..#.#.#..#.."}, {'(', ".#.#..#..#...#."},
      {')', ".#...#..#..#.#."}, {'%', "#.#..#.#.#..#.#"}, {'_', "............###"}, {'<', "..#.#.#...#...#"},
      {'>', "#...#...#.#.#.."}, {'\'', ".#..#.........."}, {'|', ".#..#..#..#..#."}, {'?', "###..#.#.....#."},
      {'[', "##.#..#..#..##."}, {']', ".##..#..#..#.##"}, {'*', "...#.#.#.#.#..."}, {'#', "#.#####.#####.#"},
      {'&', ".#.#.#.#.#.#.##"}};
  return f;
}

struct Canvas {
  int w, h;
  std::vector<uint8_t> rgb;
  Canvas(int w_, int h_) : w(w_), h(h_), rgb(size_t(w_) * size_t(h_) * 3, 255) {}
  void set(int x, int y, uint32_t c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    size_t i = (size_t(y) * size_t(w) + size_t(x)) * 3;
    rgb[i] = uint8_t(c >> 16), rgb[i + 1] = uint8_t(c >> 8), rgb[i + 2] = uint8_t(c);
  }
  void rect(int x0, int y0, int x1, int y1, uint32_t c) {
    for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y)
      for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x) set(x, y, c);
  }
  void line(double ax, double ay, double bx, double by, uint32_t c, int thick = 2, int dash = 0) {
    double len = std::hypot(bx - ax, by - ay);
    int n = std::max(1, int(len * 2));
    for (int i = 0; i <= n; ++i) {
      double t = double(i) / n;
      if (dash && int(t * len / dash) % 2) continue;
      int x = int(std::lround(ax + t * (bx - ax))), y = int(std::lround(ay + t * (by - ay)));
      rect(x - thick / 2, y - thick / 2, x + (thick - 1) / 2, y + (thick - 1) / 2, c);
    }
  }
  void dot(double cx, double cy, int r, uint32_t c) {
    for (int y = -r; y <= r; ++y)
      for (int x = -r; x <= r; ++x)
        if (x * x + y * y <= r * r) set(int(std::lround(cx)) + x, int(std::lround(cy)) + y, c);
  }
  // Text at (x, y) = top-left; scale 2 makes 6x10 glyphs. Returns the width drawn.
  int text(int x, int y, const std::string& s, uint32_t c, int scale = 2, bool vertical = false) {
    int at = 0;
    for (char ch : s) {
      char key = font().count(ch) ? ch : char(std::toupper(static_cast<unsigned char>(ch)));
      auto it = font().find(key);
      if (it != font().end()) {
        const char* g = it->second;
        for (int r = 0; r < 5; ++r)
          for (int col = 0; col < 3; ++col)
            if (g[r * 3 + col] == '#')
              for (int sy = 0; sy < scale; ++sy)
                for (int sx = 0; sx < scale; ++sx) {
                  int gx = at + col * scale + sx, gy = r * scale + sy;
                  if (vertical) set(x + gy, y - gx, c);
                  else set(x + gx, y + gy, c);
                }
      }
      at += 4 * scale;
    }
    return at;
  }
};

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    init = true;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void put32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s += char((v >> (8 * i)) & 0xff);
}

void chunk(std::string& png, const char* type, const std::string& data) {
  put32(png, uint32_t(data.size()));
  std::string body = std::string(type, 4) + data;
  png += body;
  put32(png, crc32(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
}

std::string encode_png(const Canvas& c) {
  // Scanlines with filter byte 0, in a zlib stream of stored (uncompressed) blocks.
  std::string raw;
  for (int y = 0; y < c.h; ++y) {
    raw += char(0);
    raw.append(reinterpret_cast<const char*>(&c.rgb[size_t(y) * size_t(c.w) * 3]), size_t(c.w) * 3);
  }
  std::string z = "\x78\x01";
  for (size_t at = 0; at < raw.size() || at == 0; at += 65535) {
    size_t n = std::min<size_t>(65535, raw.size() - at);
    bool last = at + n >= raw.size();
    z += char(last ? 1 : 0);
    z += char(n & 0xff), z += char(n >> 8), z += char(~n & 0xff), z += char((~n >> 8) & 0xff);
    z.append(raw, at, n);
    if (last) break;
  }
  uint32_t a = 1, b = 0;
  for (unsigned char ch : raw) a = (a + ch) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put32(ihdr, uint32_t(c.w));
  put32(ihdr, uint32_t(c.h));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", "");
  return png;
}

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

std::string render_png(const Chart& c, int width, int height) {
  Frame f = make_frame(c, width, height);
  Canvas cv(width, height);
  const uint32_t ink = 0x333333, grid = 0xEEEEEE;
  for (double t : f.xticks) {
    cv.line(f.px(t), f.top, f.px(t), height - f.bottom, grid, 1);
    auto txt = tick_text(t);
    cv.text(int(f.px(t)) - int(txt.size()) * 4, height - f.bottom + 8, txt, ink);
  }
  for (double t : f.yticks) {
    cv.line(f.left, f.py(t), width - f.right, f.py(t), grid, 1);
    auto txt = tick_text(t);
    cv.text(f.left - 8 - int(txt.size()) * 8, int(f.py(t)) - 5, txt, ink);
  }
  cv.line(f.left, f.top, width - f.right, f.top, ink, 1);
  cv.line(f.left, height - f.bottom, width - f.right, height - f.bottom, ink, 1);
  cv.line(f.left, f.top, f.left, height - f.bottom, ink, 1);
  cv.line(width - f.right, f.top, width - f.right, height - f.bottom, ink, 1);
  cv.text((width - f.right) / 2 - int(c.title.size()) * 5, 14, c.title, ink, 2);
  cv.text((f.left + width - f.right) / 2 - int(c.xlabel.size()) * 4, height - 22, c.xlabel, ink);
  cv.text(8, (f.top + height - f.bottom) / 2 + int(c.ylabel.size()) * 4, c.ylabel, ink, 2, true);
  int legend_y = f.top + 8;
  auto legend = [&](const std::string& name, uint32_t col, bool dashed) {
    cv.line(width - f.right + 14, legend_y, width - f.right + 38, legend_y, col, 3, dashed ? 5 : 0);
    cv.text(width - f.right + 44, legend_y - 5, name.substr(0, 22), ink);
    legend_y += 20;
  };
  for (size_t i = 0; i < c.hlines.size(); ++i) {
    uint32_t col = colour(c.series.size() + i);
    cv.line(f.left, f.py(c.hlines[i].y), width - f.right, f.py(c.hlines[i].y), col, 2, 6);
    legend(c.hlines[i].name, col, true);
  }
  for (size_t i = 0; i < c.series.size(); ++i) {
    const auto& sr = c.series[i];
    uint32_t col = colour(i);
    if (sr.spread.size() == sr.points.size())  // the band's edges, or the error bars, thin
      for (size_t k = 0; k < sr.points.size(); ++k) {
        auto [x, y] = sr.points[k];
        auto [lo, hi] = sr.spread[k];
        if (!finite(x, lo) || !finite(x, hi)) continue;
        if (!sr.line) {
          cv.line(f.px(x), f.py(lo), f.px(x), f.py(hi), col, 1);
        } else if (k > 0 && finite(sr.points[k - 1].first, sr.spread[k - 1].first)) {
          const double px0 = f.px(sr.points[k - 1].first);
          cv.line(px0, f.py(sr.spread[k - 1].first), f.px(x), f.py(lo), col, 1, 3);
          cv.line(px0, f.py(sr.spread[k - 1].second), f.px(x), f.py(hi), col, 1, 3);
        }
      }
    if (sr.line)
      for (size_t k = 1; k < sr.points.size(); ++k)
        if (finite(sr.points[k - 1].first, sr.points[k - 1].second) && finite(sr.points[k].first, sr.points[k].second))
          cv.line(f.px(sr.points[k - 1].first), f.py(sr.points[k - 1].second), f.px(sr.points[k].first),
                f.py(sr.points[k].second), col, 2);
    for (size_t k = 0; k < sr.points.size(); ++k) {
      if (!finite(sr.points[k].first, sr.points[k].second)) continue;
      if (sr.markers) cv.dot(f.px(sr.points[k].first), f.py(sr.points[k].second), 5, col);
      if (k < sr.labels.size() && !sr.labels[k].empty())
        cv.text(int(f.px(sr.points[k].first)) + 8, int(f.py(sr.points[k].second)) - 16, sr.labels[k], ink);
    }
    legend(sr.name, col, false);
  }
  return encode_png(cv);
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
