#include "report_table.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "headinfer/error.hpp"

namespace headinfer::cli {
namespace {

const Field* find(const std::vector<Field>& row, const std::string& key) {
  for (const Field& f : row)
    if (f.key == key) return &f;
  return nullptr;
}

std::string plain(const Field& f) {
  if (auto* i = std::get_if<int64_t>(&f.value)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&f.value)) {
    if (!std::isfinite(*d)) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", *d);
    return buf;
  }
  if (auto* s = std::get_if<std::string>(&f.value)) return *s;
  return "";
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

ReportFormat parse_report_format(const std::string& text) {
  if (text == "md") return ReportFormat::Markdown;
  if (text == "csv") return ReportFormat::Csv;
  if (text == "json") return ReportFormat::Json;
  HI_FAIL("-o: unknown output format '" << text << "' (expected md, csv or json)");
}

void ReportTable::write(ReportFormat format, FILE* out) const {
  if (format == ReportFormat::Json) {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const auto& row : rows_) {
      nlohmann::ordered_json j = nlohmann::ordered_json::object();
      for (const Field& f : row) {
        if (auto* i = std::get_if<int64_t>(&f.value)) j[f.key] = *i;
        else if (auto* d = std::get_if<double>(&f.value)) j[f.key] = std::isfinite(*d) ? nlohmann::ordered_json(*d) : nullptr;
        else if (auto* s = std::get_if<std::string>(&f.value)) j[f.key] = *s;
        else j[f.key] = nullptr;
      }
      rows.push_back(std::move(j));
    }
    std::fprintf(out, "%s\n", rows.dump(2).c_str());
    return;
  }
  if (format == ReportFormat::Csv) {
    if (rows_.empty()) return;
    std::string line;
    for (const Field& f : rows_[0]) {
      if (!line.empty()) line += ',';
      line += csv_cell(f.key);
    }
    std::fprintf(out, "%s\n", line.c_str());
    for (const auto& row : rows_) {
      line.clear();
      for (size_t i = 0; i < row.size(); ++i) {
        if (i) line += ',';
        line += csv_cell(plain(row[i]));
      }
      std::fprintf(out, "%s\n", line.c_str());
    }
    return;
  }
  std::string head = "|", rule = "|";
  for (const auto& [key, title] : md_) {
    head += " " + title + " |";
    rule += "---|";
  }
  std::fprintf(out, "%s\n%s\n", head.c_str(), rule.c_str());
  for (const auto& row : rows_) {
    std::string line = "|";
    for (const auto& [key, title] : md_) {
      const Field* f = find(row, key);
      line += " " + (f == nullptr ? std::string() : f->md.empty() ? plain(*f) : f->md) + " |";
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

}  // namespace headinfer::cli
