#include "services/extract/source.h"

#include <fmt/format.h>

#include "services/common/ids.h"
#include "services/common/records.h"
#include "services/common/text.h"
#include "services/common/time.h"

namespace starling::extract {

namespace {

using nlohmann::json;

std::string replace_all(std::string text, std::string_view what, std::string_view with) {
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + with.size())) {
    text.replace(pos, what.size(), with);
  }
  return text;
}

// Where the pointer leads, or nullptr.
const json* at(const json& doc, const std::string& pointer) {
  try {
    const json::json_pointer ptr(pointer);
    if (!doc.contains(ptr)) return nullptr;
    return &doc.at(ptr);
  } catch (const json::exception&) {
    return nullptr;  // a pointer through a scalar, or an array index that is not a number
  }
}

std::string kind(const json* v) {
  if (v == nullptr) return "nothing";
  return v->type_name();
}

json mapped(const HttpPollSource& s, const json& element) {
  if (s.map.empty()) return element;
  json out = json::object();
  for (const auto& [field, pointer] : s.map) {
    const auto* v = element.is_structured() ? at(element, pointer) : nullptr;
    if (v != nullptr && !v->is_null()) out[field] = *v;
  }
  return out;
}

}  // namespace

std::vector<Binding> each_bindings(const HttpPollSource& s) {
  std::vector<Binding> out{Binding{}};
  for (const auto& [name, values] : s.each) {
    std::vector<Binding> next;
    next.reserve(out.size() * values.size());
    for (const auto& b : out) {
      for (const auto& v : values) {
        auto with = b;
        with.emplace_back(name, v);
        next.push_back(std::move(with));
      }
    }
    out = std::move(next);
  }
  return out;
}

std::string window_url(const HttpPollSource& s, int64_t since_ms, int64_t until_ms, const Binding& binding) {
  auto url = replace_all(replace_all(s.url, "${since}", rfc3339(since_ms)), "${until}", rfc3339(until_ms));
  for (const auto& [name, value] : binding) {
    url = replace_all(std::move(url), fmt::format("${{{}}}", name), url_encode(value));
  }
  return url;
}

std::string with_query(const std::string& url, const std::vector<std::pair<std::string, std::string>>& params) {
  const auto hash = url.find('#');
  std::string base = url.substr(0, hash);
  const std::string fragment = hash == std::string::npos ? "" : url.substr(hash);
  const auto q = base.find('?');
  for (const auto& [name, value] : params) {
    const auto key = url_encode(name) + "=";
    // Already there (a next link that carries it): kept as the API wrote it.
    if (q != std::string::npos) {
      const auto query = std::string_view(base).substr(q + 1);
      bool present = false;
      for (std::size_t from = 0; from <= query.size();) {
        const auto amp = query.find('&', from);
        const auto item = query.substr(from, amp == std::string_view::npos ? std::string_view::npos : amp - from);
        if (item.starts_with(key)) present = true;
        if (amp == std::string_view::npos) break;
        from = amp + 1;
      }
      if (present) continue;
    }
    base += base.find('?') == std::string::npos ? '?' : '&';
    base += key + url_encode(value);
  }
  return base + fragment;
}

std::string redact(const HttpPollSource& s, const std::string& url) {
  auto out = url;
  for (const auto& [name, value] : s.auth_query) {
    for (const auto& shown : {url_encode(value), value}) {
      if (!shown.empty()) {
        out = replace_all(std::move(out), fmt::format("{}={}", url_encode(name), shown),
                          fmt::format("{}=***", url_encode(name)));
      }
    }
  }
  return out;
}

std::string paged_url(const HttpPollSource& s, const std::string& first, int64_t position) {
  std::vector<std::pair<std::string, std::string>> params{{s.page_param, std::to_string(position)}};
  if (!s.size_param.empty()) params.emplace_back(s.size_param, std::to_string(s.page_size));
  return with_query(first, params);
}

Result<Page> parse_page(const HttpPollSource& s, std::string_view body) {
  if (auto depth = json_too_deep(body)) {
    return fail(Errc::kInvalidArgument,
                fmt::format("the response nests deeper than {} levels (at byte {})", kMaxJsonDepth, *depth));
  }
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    return fail(Errc::kInvalidArgument, fmt::format("the response is not JSON: {}", utf8_safe(e.what())));
  }
  Page page;
  if (!s.records.empty() || s.columns.empty()) {
    const auto* arr = at(doc, s.records);
    if (arr == nullptr || !arr->is_array()) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("records: expected an array at '{}', found {}", s.records, kind(arr)));
    }
    page.records.reserve(arr->size());
    for (const auto& e : *arr) page.records.push_back(mapped(s, e));
  } else {
    const auto* cols = at(doc, s.columns);
    if (cols == nullptr || !cols->is_object() || cols->empty()) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("columns: expected an object of arrays at '{}', found {}", s.columns, kind(cols)));
    }
    std::optional<std::size_t> rows;
    for (const auto& [name, values] : cols->items()) {
      if (!values.is_array()) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("columns: '{}{}{}' is {}, expected an array", s.columns,
                                s.columns.ends_with('/') ? "" : "/", excerpt(name), values.type_name()));
      }
      if (rows && *rows != values.size()) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("columns: '{}' has {} values, the others {}", excerpt(name), values.size(), *rows));
      }
      rows = values.size();
    }
    const std::size_t n = rows.value_or(0);
    page.records.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      json element = json::object();
      for (const auto& [name, values] : cols->items()) element[name] = values[i];
      page.records.push_back(mapped(s, element));
    }
  }
  if (!s.paginate_next.empty()) {
    const auto* next = at(doc, s.paginate_next);
    if (next != nullptr && next->is_string() && !next->get<std::string>().empty()) {
      const auto& url = next->get_ref<const std::string&>();
      if (!url.starts_with("http://") && !url.starts_with("https://")) {
        return fail(Errc::kInvalidArgument, fmt::format("paginate.next: expected an absolute URL at '{}', got '{}'",
                                                        s.paginate_next, excerpt(utf8_safe(url), 80)));
      }
      page.next = url;
    } else if (next != nullptr && !next->is_null() && !next->is_string()) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("paginate.next: expected a URL or null at '{}', found {}", s.paginate_next, kind(next)));
    }
  }
  return page;
}

std::string stable_id(const std::vector<std::string>& parts) {
  StableHash a;
  StableHash b;
  b.add("starling-extract");
  for (const auto& part : parts) {
    // The length first: ("ab","c") and ("a","bc") differ.
    const auto len = fmt::format("{}:", part.size());
    a.add(len).add(part);
    b.add(len).add(part);
  }
  return fmt::format("{:016x}{:016x}", a.value(), b.value());
}

std::string content_event_id(const PipelineConfig& p, const google::protobuf::Message& record) {
  const auto device = p.device_id_field ? field_text(record, p.device_id_field) : std::string{};
  const auto time = p.event_time_field ? timestamp_ms(record, p.event_time_field) : 0;
  // Without either key, the content itself is what names the record.
  if (device.empty() && time == 0) return "x" + stable_id({p.name, record.SerializeAsString()});
  return "x" + stable_id({p.name, device, std::to_string(time)});
}

}  // namespace starling::extract
