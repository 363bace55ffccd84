#pragma once
// Reads a SQLite warehouse the way a person would: one SELECT, every value
// as text ("NULL" for NULL). For the load tests' checks of the table.

#include <sqlite3.h>

#include <string>
#include <vector>

namespace starling::load {

inline std::vector<std::vector<std::string>> query(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_stmt* s = nullptr;
  std::vector<std::vector<std::string>> out;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      std::vector<std::string> r;
      for (int i = 0; i < sqlite3_column_count(s); ++i) {
        const auto* t = sqlite3_column_text(s, i);
        r.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
      }
      out.push_back(r);
    }
  }
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

}  // namespace starling::load
