// Rows of named fields written as a Markdown table, CSV or JSON, one row per
// configuration (as llama-bench does). CSV and JSON carry every field with raw
// numbers (bytes as integers, seconds as floats); Markdown shows the fields given a
// column title, with numbers formatted for people.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <variant>
#include <vector>

namespace headinfer::cli {

enum class ReportFormat { Markdown, Csv, Json };
ReportFormat parse_report_format(const std::string& text);  // md, csv, json (-o)

struct Field {
  std::string key;                                        // machine name (CSV header, JSON key)
  std::variant<std::monostate, int64_t, double, std::string> value;  // monostate: not measured (empty, null)
  std::string md;                                         // Markdown cell ("" with a title: formatted value)
};

class ReportTable {
 public:
  // Markdown columns: (key, title) in order; keys without a title stay out of Markdown.
  void set_markdown_columns(std::vector<std::pair<std::string, std::string>> columns) { md_ = std::move(columns); }
  void add(std::vector<Field> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  // Every row lists the same keys in the same order (the first row's).
  void write(ReportFormat f, FILE* out) const;

 private:
  std::vector<std::pair<std::string, std::string>> md_;
  std::vector<std::vector<Field>> rows_;
};

}  // namespace headinfer::cli
