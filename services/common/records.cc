#include "services/common/records.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/strutil.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "services/common/text.h"

namespace starling {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using nlohmann::json;

namespace {

// A client's value as an error message shows it: JSON text, cut after 64 bytes.
std::string brief(const json& v) { return excerpt(json_text(v)); }

// Converts one JSON value into field `f` of `m`; `path` names it in errors.
class Converter {
 public:
  explicit Converter(std::size_t index) : index_(index) {}

  std::optional<FieldError> object(Message& m, const json& value, const std::string& prefix) {
    if (!value.is_object()) return error(prefix, fmt::format("expected a JSON object, got {}", kind(value)));
    const Descriptor* d = m.GetDescriptor();
    for (const auto& [key, v] : value.items()) {
      const FieldDescriptor* f = d->FindFieldByName(key);
      if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
      const auto path = prefix.empty() ? key : fmt::format("{}.{}", prefix, key);
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

  std::optional<FieldError> error(const std::string& path, std::string reason) const {
    return FieldError{index_, path, std::move(reason)};
  }

  std::optional<FieldError> field(Message& m, const FieldDescriptor* f, const json& v, const std::string& path) {
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
  std::optional<FieldError> through_protobuf(Message& m, const FieldDescriptor* f, const json& v,
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
      T x{};
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return x;
    }
    return std::nullopt;
  }

  // Proto JSON: a number, a decimal string, or "NaN", "Infinity", "-Infinity".
  static std::optional<double> floating(const json& v) {
    if (v.is_number()) return v.get<double>();
    if (!v.is_string()) return std::nullopt;
    const auto& s = v.get_ref<const std::string&>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
    if (s.empty() || s.size() > 32 || s.find_first_not_of("0123456789+-.eE") != std::string::npos) {
      return std::nullopt;
    }
    double x = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(x)) return std::nullopt;
    return x;
  }

  std::optional<FieldError> scalar(Message& m, const FieldDescriptor* f, const json& v, const std::string& path) {
    const Reflection* r = m.GetReflection();
    const bool rep = f->is_repeated();
    auto bad = [&](std::string_view expected) {
      return error(path, fmt::format("expected {}, got {}", expected, brief(v)));
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

}  // namespace

std::unique_ptr<Message> new_record(const PipelineConfig& p) {
  const auto* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(p.descriptor);
  STARLING_ASSERT(proto != nullptr, "no prototype for {}", p.message_type);
  return std::unique_ptr<Message>(proto->New());
}

std::expected<std::unique_ptr<Message>, FieldError> record_from_json(const PipelineConfig& p, const json& value,
                                                                     std::size_t index) {
  auto msg = new_record(p);
  Converter c(index);
  if (auto e = c.object(*msg, value, "")) return std::unexpected(std::move(*e));
  return msg;
}

Status parse_record(const PipelineConfig& p, const std::string& bytes, Message& into) {
  if (!into.ParseFromString(bytes))
    return fail(Errc::kInvalidArgument, fmt::format("payload is not a valid {}", p.message_type));
  return {};
}

Result<std::unique_ptr<Message>> record_from_bytes(const PipelineConfig& p, const std::string& bytes) {
  auto msg = new_record(p);
  if (auto st = parse_record(p, bytes, *msg); !st) return std::unexpected(st.error());
  return msg;
}

std::string record_to_json(const Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

std::string field_text(const Message& m, const FieldDescriptor* f) {
  const auto* r = m.GetReflection();
  if (f->has_presence() && !r->HasField(m, f)) return {};
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return std::to_string(r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_INT64:
      return std::to_string(r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return std::to_string(r->GetUInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT64:
      return std::to_string(r->GetUInt64(m, f));
    // Shortest text that reads back as the same value (the clean stage's
    // changes, logged as text, write numbers the same way: rules.cc, write_value).
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return fmt::format(FMT_COMPILE("{}"), r->GetDouble(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return fmt::format(FMT_COMPILE("{}"), r->GetFloat(m, f));
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(m, f) ? "true" : "false";
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnum(m, f)->name();
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetString(m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const auto& sub = r->GetMessage(m, f);
      if (const auto* ts = dynamic_cast<const google::protobuf::Timestamp*>(&sub)) {
        return google::protobuf::util::TimeUtil::ToString(*ts);
      }
      return record_to_json(sub);
    }
  }
  return {};
}

Status set_field_text(Message& m, const FieldDescriptor* f, const std::string& text) {
  const auto* r = m.GetReflection();
  auto bad = [&](const char* what) {
    return fail(Errc::kInvalidArgument, fmt::format("expected {} for field '{}', got '{}'", what, f->name(), text));
  };
  auto whole = [&](auto parse) -> bool {
    try {
      std::size_t used = 0;
      parse(used);
      return used == text.size() && !text.empty();
    } catch (const std::exception&) {
      return false;
    }
  };
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      long long v = 0;
      if (!whole([&](std::size_t& n) { v = std::stoll(text, &n); }) || v < INT32_MIN || v > INT32_MAX)
        return bad("a 32-bit integer");
      r->SetInt32(&m, f, static_cast<int32_t>(v));
      return {};
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      long long v = 0;
      if (!whole([&](std::size_t& n) { v = std::stoll(text, &n); })) return bad("an integer");
      r->SetInt64(&m, f, v);
      return {};
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      unsigned long long v = 0;
      if (text.starts_with('-') || !whole([&](std::size_t& n) { v = std::stoull(text, &n); }) || v > UINT32_MAX)
        return bad("an unsigned 32-bit integer");
      r->SetUInt32(&m, f, static_cast<uint32_t>(v));
      return {};
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      unsigned long long v = 0;
      if (text.starts_with('-') || !whole([&](std::size_t& n) { v = std::stoull(text, &n); }))
        return bad("an unsigned integer");
      r->SetUInt64(&m, f, v);
      return {};
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (!whole([&](std::size_t& n) { v = std::stod(text, &n); })) return bad("a number");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        r->SetDouble(&m, f, v);
      } else {
        r->SetFloat(&m, f, static_cast<float>(v));
      }
      return {};
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      if (text != "true" && text != "false") return bad("true or false");
      r->SetBool(&m, f, text == "true");
      return {};
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* v = f->enum_type()->FindValueByName(text);
      if (v == nullptr) return bad(("a value of " + f->enum_type()->full_name()).c_str());
      r->SetEnum(&m, f, v);
      return {};
    }
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(&m, f, text);
      return {};
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      google::protobuf::Timestamp ts;
      if (!is_timestamp(f)) return bad("no value: message fields take no default");
      if (!google::protobuf::util::TimeUtil::FromString(text, &ts)) return bad("an RFC 3339 time");
      r->MutableMessage(&m, f)->CopyFrom(ts);
      return {};
    }
  }
  return bad("a value");
}

bool is_timestamp(const FieldDescriptor* f) {
  return f->message_type() != nullptr &&
         f->message_type()->full_name() == google::protobuf::Timestamp::descriptor()->full_name();
}

int64_t timestamp_ms(const Message& m, const FieldDescriptor* f) {
  if (f == nullptr || !m.GetReflection()->HasField(m, f)) return 0;
  const auto& sub = m.GetReflection()->GetMessage(m, f);
  const auto* ts = dynamic_cast<const google::protobuf::Timestamp*>(&sub);
  return ts == nullptr ? 0 : google::protobuf::util::TimeUtil::TimestampToMilliseconds(*ts);
}

namespace {

using TextVisitor = std::function<std::optional<std::string>(const std::string& value, bool text)>;

// Every string and bytes value of `m`, at any depth, until `visit` returns a
// reason: then a FieldError naming the value's path.
std::optional<FieldError> walk_strings(const Message& m, std::size_t index, const std::string& prefix,
                                       const TextVisitor& visit) {
  using google::protobuf::FieldDescriptor;
  const auto* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const auto* f : fields) {
    const auto path = prefix.empty() ? f->name() : prefix + "." + f->name();
    const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
    for (int i = 0; i < n; ++i) {
      const auto at = f->is_repeated() ? fmt::format("{}[{}]", path, i) : path;
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
        std::string scratch;
        const auto& v =
            f->is_repeated() ? r->GetRepeatedStringReference(m, f, i, &scratch) : r->GetStringReference(m, f, &scratch);
        if (auto why = visit(v, f->type() == FieldDescriptor::TYPE_STRING)) return FieldError{index, at, *why};
      } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        const auto& sub = f->is_repeated() ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f);
        if (auto e = walk_strings(sub, index, at, visit)) return e;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<FieldError> nul_in_text(const Message& m, std::size_t index) {
  return walk_strings(m, index, "", [](const std::string& v, bool text) -> std::optional<std::string> {
    const auto nul = text ? v.find('\0') : std::string::npos;
    if (nul == std::string::npos) return std::nullopt;
    return fmt::format("a NUL character at byte {}; text may not contain NUL", nul);
  });
}

std::optional<FieldError> over_limits(const Message& record, const RecordLimits& limits, std::size_t index) {
  // A field first: it says more than the record's size.
  auto too_long = [&limits](const std::string& v, bool) -> std::optional<std::string> {
    if (v.size() <= limits.field_bytes) return std::nullopt;
    return fmt::format("{} bytes; at most {} (--max-field-bytes)", v.size(), limits.field_bytes);
  };
  if (auto e = walk_strings(record, index, "", too_long)) return e;
  const auto size = record.ByteSizeLong();
  if (size > limits.event_bytes) {
    return FieldError{
        index, "",
        fmt::format("the record is {} bytes serialized; at most {} (--max-event-bytes)", size, limits.event_bytes)};
  }
  return std::nullopt;
}

}  // namespace starling
