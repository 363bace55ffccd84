#include "services/ingest/decode.h"

#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/strutil.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "services/common/records.h"
#include "starling/v1/ingest.pb.h"

namespace starling::ingest {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

Result<BodyFormat> body_format(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  std::string lower(type);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.empty() || lower == "application/json") return BodyFormat::kJson;
  if (lower == "application/x-ndjson" || lower == "application/ndjson" || lower == "application/jsonl") {
    return BodyFormat::kNdjson;
  }
  if (lower == "application/x-protobuf" || lower == "application/protobuf") return BodyFormat::kProtobuf;
  return fail(Errc::kInvalidArgument,
              fmt::format("unsupported Content-Type '{}'; send application/json, application/x-ndjson or "
                          "application/x-protobuf (a starling.v1.EventBatch)",
                          type));
}

namespace {

// Converts one JSON value into field `f` of `m`; `path` names it in errors.
class Converter {
 public:
  explicit Converter(std::size_t index) : index_(index) {}

  std::optional<RecordError> object(Message& m, const json& value, const std::string& prefix) {
    if (!value.is_object()) return error(prefix, fmt::format("expected a JSON object, got {}", kind(value)));
    const Descriptor* d = m.GetDescriptor();
    for (const auto& [key, v] : value.items()) {
      const FieldDescriptor* f = d->FindFieldByName(key);
      if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
      const auto path = prefix.empty() ? key : prefix + "." + key;
      if (f == nullptr) return error(path, fmt::format("unknown field of {}; it has: {}", d->full_name(), names(d)));
      if (v.is_null()) continue;  // proto JSON: null is unset
      if (auto e = field(m, f, v, path)) return e;
    }
    return std::nullopt;
  }

 private:
  static std::string names(const Descriptor* d) {
    std::string out;
    for (int i = 0; i < d->field_count(); ++i) out += (i ? ", " : "") + d->field(i)->name();
    return out;
  }

  static std::string kind(const json& v) {
    switch (v.type()) {
      case json::value_t::number_integer:
      case json::value_t::number_unsigned:
      case json::value_t::number_float:
        return "a number";
      case json::value_t::string:
        return "a string";
      case json::value_t::boolean:
        return "a boolean";
      case json::value_t::array:
        return "an array";
      case json::value_t::object:
        return "an object";
      default:
        return "null";
    }
  }

  std::optional<RecordError> error(const std::string& path, std::string reason) const {
    return RecordError{index_, path, std::move(reason)};
  }

  std::optional<RecordError> field(Message& m, const FieldDescriptor* f, const json& v, const std::string& path) {
    if (f->is_map() || (f->message_type() != nullptr && is_other_well_known(f->message_type()))) {
      return through_protobuf(m, f, v, path);
    }
    if (f->is_repeated()) {
      if (!v.is_array()) return error(path, fmt::format("expected an array, got {}", kind(v)));
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (auto e = scalar(m, f, v[i], fmt::format("{}[{}]", path, i))) return e;
      }
      return std::nullopt;
    }
    return scalar(m, f, v, path);
  }

  static bool is_other_well_known(const Descriptor* d) {
    return d->file()->package() == "google.protobuf" && d->full_name() != "google.protobuf.Timestamp";
  }

  // Maps and well-known types (Struct, Duration, wrappers...) have JSON forms
  // protobuf's own parser knows; give it just this field.
  std::optional<RecordError> through_protobuf(Message& m, const FieldDescriptor* f, const json& v,
                                              const std::string& path) {
    std::unique_ptr<Message> part(m.New());
    google::protobuf::util::JsonParseOptions opts;
    const auto st = google::protobuf::util::JsonStringToMessage(json{{f->name(), v}}.dump(), part.get(), opts);
    if (!st.ok()) return error(path, std::string(st.message()));
    m.MergeFrom(*part);
    return std::nullopt;
  }

  template <class T>
  std::optional<T> integer(const json& v) {
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      const auto x = v.get<int64_t>();
      if constexpr (std::is_signed_v<T>) {
        if (x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max()) return static_cast<T>(x);
      } else {
        if (x >= 0 && static_cast<uint64_t>(x) <= std::numeric_limits<T>::max()) return static_cast<T>(x);
      }
      return std::nullopt;
    }
    if (v.is_number_unsigned()) {
      const auto x = v.get<uint64_t>();
      if (x <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(x);
      return std::nullopt;
    }
    if (v.is_number_float()) {
      const double x = v.get<double>();
      // 5.0 is an integer; 5.5 and 1e30 are not (for this type).
      if (std::isfinite(x) && std::floor(x) == x && x >= static_cast<double>(std::numeric_limits<T>::min()) &&
          x < static_cast<double>(std::numeric_limits<T>::max()) + 1.0) {  // max as a double may round up
        return static_cast<T>(x);
      }
      return std::nullopt;
    }
    if (v.is_string()) {  // proto JSON allows "123", needed for 64-bit values
      const auto& s = v.get_ref<const std::string&>();
      if (s.empty() || s.size() > 20) return std::nullopt;
      try {
        std::size_t used = 0;
        if constexpr (std::is_signed_v<T>) {
          const long long x = std::stoll(s, &used);
          if (used == s.size() && x >= std::numeric_limits<T>::min() && x <= std::numeric_limits<T>::max()) {
            return static_cast<T>(x);
          }
        } else {
          if (s[0] == '-') return std::nullopt;
          const unsigned long long x = std::stoull(s, &used);
          if (used == s.size() && x <= std::numeric_limits<T>::max()) return static_cast<T>(x);
        }
      } catch (const std::exception&) {
      }
    }
    return std::nullopt;
  }

  static std::optional<double> floating(const json& v) {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
      if (s == "Infinity") return std::numeric_limits<double>::infinity();
      if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
    }
    return std::nullopt;
  }

  std::optional<RecordError> scalar(Message& m, const FieldDescriptor* f, const json& v, const std::string& path) {
    const Reflection* r = m.GetReflection();
    const bool rep = f->is_repeated();
    auto bad = [&](std::string_view expected) {
      return error(path, fmt::format("expected {}, got {}", expected,
                                     v.is_string() ? "\"" + v.get<std::string>() + "\"" : v.dump()));
    };
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        auto x = integer<int32_t>(v);
        if (!x) return bad("an integer from -2147483648 to 2147483647");
        rep ? r->AddInt32(&m, f, *x) : r->SetInt32(&m, f, *x);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        auto x = integer<int64_t>(v);
        if (!x) return bad("a 64-bit integer (a number or a decimal string)");
        rep ? r->AddInt64(&m, f, *x) : r->SetInt64(&m, f, *x);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        auto x = integer<uint32_t>(v);
        if (!x) return bad("an integer from 0 to 4294967295");
        rep ? r->AddUInt32(&m, f, *x) : r->SetUInt32(&m, f, *x);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        auto x = integer<uint64_t>(v);
        if (!x) return bad("an unsigned 64-bit integer (a number or a decimal string)");
        rep ? r->AddUInt64(&m, f, *x) : r->SetUInt64(&m, f, *x);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_DOUBLE: {
        auto x = floating(v);
        if (!x) return bad("a number");
        rep ? r->AddDouble(&m, f, *x) : r->SetDouble(&m, f, *x);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_FLOAT: {
        auto x = floating(v);
        if (!x || (std::isfinite(*x) && std::abs(*x) > std::numeric_limits<float>::max())) {
          return bad("a number within the range of a float");
        }
        rep ? r->AddFloat(&m, f, static_cast<float>(*x)) : r->SetFloat(&m, f, static_cast<float>(*x));
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        if (!v.is_boolean()) return bad("true or false");
        rep ? r->AddBool(&m, f, v.get<bool>()) : r->SetBool(&m, f, v.get<bool>());
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const auto* e = f->enum_type();
        const google::protobuf::EnumValueDescriptor* ev = nullptr;
        if (v.is_string()) ev = e->FindValueByName(v.get<std::string>());
        if (auto n = v.is_string() ? std::nullopt : integer<int32_t>(v)) ev = e->FindValueByNumber(*n);
        if (ev == nullptr) {
          std::string names;
          for (int i = 0; i < e->value_count(); ++i) names += (i ? ", " : "") + e->value(i)->name();
          return bad("one of " + names);
        }
        rep ? r->AddEnum(&m, f, ev) : r->SetEnum(&m, f, ev);
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        if (!v.is_string()) return bad("a string");
        if (f->type() == FieldDescriptor::TYPE_BYTES) {
          std::string raw;
          if (!google::protobuf::Base64Unescape(v.get_ref<const std::string&>(), &raw)) return bad("base64 bytes");
          rep ? r->AddString(&m, f, std::move(raw)) : r->SetString(&m, f, std::move(raw));
        } else {
          rep ? r->AddString(&m, f, v.get<std::string>()) : r->SetString(&m, f, v.get<std::string>());
        }
        return std::nullopt;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* sub = rep ? r->AddMessage(&m, f) : r->MutableMessage(&m, f);
        if (f->message_type()->full_name() == "google.protobuf.Timestamp") {
          google::protobuf::Timestamp ts;
          if (!v.is_string() || !google::protobuf::util::TimeUtil::FromString(v.get<std::string>(), &ts)) {
            return bad("an RFC 3339 time such as \"2026-11-24T10:00:00Z\"");
          }
          sub->CopyFrom(ts);
          return std::nullopt;
        }
        if (++depth_ > 32) return error(path, "nested more than 32 levels deep");
        auto e = object(*sub, v, path);
        --depth_;
        return e;
      }
    }
    return bad("a supported type");
  }

  std::size_t index_;
  int depth_ = 0;
};

// nlohmann's message says "syntax error while parsing value - invalid literal;
// last read: 'x'" and the byte offset; add line and column.
std::string position(std::string_view body, std::size_t byte) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < byte && i < body.size(); ++i) {
    if (body[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {}, column {}", line, col);
}

void convert(const PipelineConfig& p, const json& value, std::size_t index, Decoded& out) {
  auto rec = json_to_record(p, value, index);
  if (rec) {
    out.records.push_back({index, std::move(*rec)});
  } else {
    out.refused.push_back(std::move(rec.error()));
  }
}

}  // namespace

std::expected<std::unique_ptr<Message>, RecordError> json_to_record(const PipelineConfig& p, const json& value,
                                                                    std::size_t index) {
  auto msg = new_record(p);
  Converter c(index);
  if (auto e = c.object(*msg, value, "")) return std::unexpected(std::move(*e));
  return msg;
}

Result<Decoded> decode_body(const PipelineConfig& p, BodyFormat format, std::string_view body) {
  Decoded out;
  switch (format) {
    case BodyFormat::kJson: {
      json doc;
      try {
        doc = json::parse(body);
      } catch (const json::parse_error& e) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("invalid JSON at {}: {}", position(body, e.byte ? e.byte - 1 : 0), e.what()));
      } catch (const json::exception& e) {  // e.g. a number beyond a double (found by the fuzzer)
        return fail(Errc::kInvalidArgument, fmt::format("invalid JSON: {}", e.what()));
      }
      if (doc.is_object()) {
        convert(p, doc, 0, out);
      } else if (doc.is_array()) {
        for (std::size_t i = 0; i < doc.size(); ++i) convert(p, doc[i], i, out);
      } else {
        return fail(Errc::kInvalidArgument,
                    "expected a JSON object or an array of objects, got " + std::string(doc.type_name()));
      }
      break;
    }
    case BodyFormat::kNdjson: {
      std::size_t line = 0;
      while (!body.empty()) {
        const auto nl = body.find('\n');
        auto text = body.substr(0, nl);
        body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        const auto index = line++;
        if (text.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank lines separate nothing
        try {
          convert(p, json::parse(text), index, out);
        } catch (const json::parse_error& e) {
          out.refused.push_back(
              {index, "",
               fmt::format("invalid JSON on line {} at column {}: {}", index + 1, e.byte == 0 ? 1 : e.byte, e.what())});
        } catch (const json::exception& e) {
          out.refused.push_back({index, "", fmt::format("invalid JSON on line {}: {}", index + 1, e.what())});
        }
      }
      break;
    }
    case BodyFormat::kProtobuf: {
      v1::EventBatch batch;
      if (!batch.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
        return fail(Errc::kInvalidArgument, "the body is not a valid starling.v1.EventBatch");
      }
      for (int i = 0; i < batch.records_size(); ++i) {
        const auto idx = static_cast<std::size_t>(i);
        auto parsed = record_from_bytes(p, batch.records(i));
        if (!parsed) {
          out.refused.push_back({idx, "", parsed.error().message});
          continue;
        }
        auto msg = std::move(*parsed);
        // Fields this type does not have arrive as unknown fields: refuse them
        // as JSON refuses an unknown name.
        const auto& unknown = msg->GetReflection()->GetUnknownFields(*msg);
        if (unknown.field_count() > 0) {
          out.refused.push_back({idx, fmt::format("#{}", unknown.field(0).number()),
                                 fmt::format("field number {} is not a field of {} (or has another wire type)",
                                             unknown.field(0).number(), p.message_type)});
          continue;
        }
        out.records.push_back({idx, std::move(msg)});
      }
      break;
    }
  }
  if (out.count() == 0) return fail(Errc::kInvalidArgument, "the body holds no records");
  return out;
}

}  // namespace starling::ingest
