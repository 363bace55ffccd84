#include "services/common/records.h"

#include <fmt/compile.h>
#include <fmt/format.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>

namespace starling {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

std::unique_ptr<Message> new_record(const PipelineConfig& p) {
  const auto* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(p.descriptor);
  STARLING_ASSERT(proto != nullptr, "no prototype for {}", p.message_type);
  return std::unique_ptr<Message>(proto->New());
}

Result<std::unique_ptr<Message>> record_from_json(const PipelineConfig& p, const nlohmann::json& record) {
  if (!record.is_object())
    return fail(Errc::kInvalidArgument, fmt::format("expected a JSON object, got {}", record.type_name()));
  auto msg = new_record(p);
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  const auto st = google::protobuf::util::JsonStringToMessage(record.dump(), msg.get(), opts);
  if (!st.ok()) return fail(Errc::kInvalidArgument, std::string(st.message()));
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

}  // namespace starling
