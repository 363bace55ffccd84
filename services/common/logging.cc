#include "services/common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

#include "services/common/text.h"
#include "services/common/time.h"

namespace starling {

namespace {

void append_json_string(std::string_view raw, spdlog::memory_buf_t& out) {
  // A message may quote client bytes: a JSON line stays valid JSON.
  const auto s = utf8_safe(raw);
  out.push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

// {"ts":"2026-11-23T21:00:00.123Z","level":"info","service":"load","msg":"..."}
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) override {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    fmt::format_to(std::back_inserter(out), R"({{"ts":"{}","level":)", rfc3339(ms));
    const auto level = spdlog::level::to_string_view(msg.level);
    append_json_string(std::string_view(level.data(), level.size()), out);
    out.append(std::string_view(R"(,"service":)"));
    append_json_string(std::string_view(msg.logger_name.data(), msg.logger_name.size()), out);
    out.append(std::string_view(R"(,"msg":)"));
    append_json_string(std::string_view(msg.payload.data(), msg.payload.size()), out);
    out.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_json_formatter() { return std::make_unique<JsonFormatter>(); }

void setup_logging(const std::string& service, const std::string& level, const std::string& format) {
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw std::invalid_argument("--log-level: expected trace, debug, info, warn, error or off, got '" + level + "'");
  }
  if (format != "text" && format != "json") {
    throw std::invalid_argument("--log-format: expected text or json, got '" + format + "'");
  }
  spdlog::drop(service);
  auto logger = spdlog::stderr_color_mt(service);
  if (format == "json") {
    logger->set_formatter(make_json_formatter());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace starling
