// The pieces of `starling topics`, `tail` and `completion` that need no
// broker: argument parsing, the decoder per topic, one record's JSON line.

#include <gmock/gmock.h>

#include <nlohmann/json.hpp>

#include "services/cli/completion.h"
#include "services/cli/tail.h"
#include "services/cli/topics.h"
#include "starling/v1/saga.pb.h"

namespace starling::cli {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(TopicConfigs, KeyValuePairsParseAndAnythingElseIsNamed) {
  auto ok = parse_topic_configs({"retention.ms=1000", "segment.bytes=1048576", "x="});
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->at("retention.ms"), "1000");
  EXPECT_EQ(ok->at("x"), "");
  for (const char* bad : {"retention.ms", "=5"}) {
    auto r = parse_topic_configs({bad});
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_THAT(r.error().message, HasSubstr(std::string("--config '") + bad + "'"));
  }
  auto twice = parse_topic_configs({"a=1", "a=2"});
  ASSERT_FALSE(twice.has_value());
  EXPECT_THAT(twice.error().message, HasSubstr("a is given twice"));
}

TEST(TailFrom, TakesATimeUnixMsOrADurationBackFromNow) {
  const int64_t now = 1'795'428'000'000;
  EXPECT_EQ(parse_tail_from("10m", now).value(), now - 600'000);
  EXPECT_EQ(parse_tail_from("2h", now).value(), now - 7'200'000);
  EXPECT_EQ(parse_tail_from("2026-11-23T10:00:00Z", now).value(), 1'795'428'000'000);
  EXPECT_EQ(parse_tail_from("1795428000250", now).value(), 1'795'428'000'250);
  auto bad = parse_tail_from("2026-11-23 10:00", now);
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().message, HasSubstr("--from '2026-11-23 10:00'"));
}

TEST(TailType, EachStarlingTopicHasItsDecoder) {
  EXPECT_EQ(tail_type_for_topic("ecowheels.raw"), "envelope");
  EXPECT_EQ(tail_type_for_topic("ecowheels.clean.replay"), "envelope");
  EXPECT_EQ(tail_type_for_topic("ecowheels.rejected"), "rejected");
  EXPECT_EQ(tail_type_for_topic("ecowheels.dlq"), "rejected");
  EXPECT_EQ(tail_type_for_topic("starling.saga"), "fact");
  EXPECT_EQ(tail_type_for_topic("starling.saga.outcomes"), "outcome");
  EXPECT_EQ(tail_type_for_topic("something.else"), "raw");
  EXPECT_EQ(tail_message_type("fact").value(), "starling.v1.ProgressFact");
  EXPECT_EQ(tail_message_type("starling.v1.RideTelemetry").value(), "starling.v1.RideTelemetry");
  EXPECT_EQ(tail_message_type("raw").value(), "");
  EXPECT_FALSE(tail_message_type("starling.v1.NoSuchThing").has_value());
}

TEST(TailLine, BytesThatAreNotTheTopicsTypeAreShownWithAnErrorNeverThrown) {
  kafka::InMessage m{"starling.saga", 1, 42, 1'795'428'000'000, "k\xff", std::string("\x0a\x02hi\xff\xff", 6), {}};
  const json line = json::parse(tail_line(m, "starling.v1.ProgressFact"));
  EXPECT_EQ(line["topic"], "starling.saga");
  EXPECT_EQ(line["partition"], 1);
  EXPECT_EQ(line["offset"], 42);
  EXPECT_EQ(line["timestamp"], "2026-11-23T10:00:00.000Z");
  EXPECT_EQ(line["key"], "k\xef\xbf\xbd");  // made valid UTF-8
  EXPECT_THAT(line["error"].get<std::string>(), HasSubstr("starling.v1.ProgressFact"));
  EXPECT_EQ(line["value_base64"], "CgJoaf//");

  // Bytes protobuf reads as nothing but unknown fields are not taken for a fact.
  m.value = std::string("\xf8\x01\x05", 3);  // field 31, varint 5
  const json unknown = json::parse(tail_line(m, "starling.v1.ProgressFact"));
  EXPECT_THAT(unknown["error"].get<std::string>(), HasSubstr("none of its fields is set"));

  v1::ProgressFact fact;
  fact.set_saga_id("s");
  fact.set_total(3);
  m.value = fact.SerializeAsString();
  const json ok = json::parse(tail_line(m, "starling.v1.ProgressFact"));
  EXPECT_FALSE(ok.contains("error"));
  EXPECT_EQ(ok["value"]["saga_id"], "s");
  EXPECT_EQ(ok["value"]["total"], 3);

  m.value = std::string("\x00\xff", 2);
  const json raw = json::parse(tail_line(m, ""));
  EXPECT_EQ(raw["value_base64"], "AP8=");
}

TEST(Completion, TheBashScriptListsEachLevelsSubcommandsAndOptions) {
  CLI::App app{"x"};
  auto* topics = app.add_subcommand("topics", "t");
  topics->add_subcommand("list", "l");
  std::string kafka;
  bool json_out = false;
  topics->add_option("--kafka", kafka, "k");
  topics->add_flag("--json", json_out, "j");
  const std::string script = bash_completion(app, "prog");
  EXPECT_THAT(script, HasSubstr("\"\") subs=\"topics\""));
  EXPECT_THAT(script, HasSubstr("\"topics\") subs=\"list\"; opts=\"--help -h --kafka --json\"; valued=\"--kafka\""));
  EXPECT_THAT(script, HasSubstr("complete -F _prog prog"));
}

}  // namespace
}  // namespace starling::cli
