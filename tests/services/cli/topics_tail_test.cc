// `starling topics` and `starling tail` as a user runs them: the real
// `starling` executable against a real starling-broker on a free port, with
// records produced through the same librdkafka adapter the services use.

#include <fcntl.h>
#include <gmock/gmock.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker-adapters/kafka/kafka.h"
#include "services/common/time.h"
#include "starling/v1/ecowheels.pb.h"
#include "starling/v1/envelope.pb.h"
#include "starling/v1/saga.pb.h"
#include "tests/services/broker/broker_process.h"

namespace starling::cli {
namespace {

using namespace std::chrono_literals;
using broker::testing::BrokerProcess;
using broker::testing::CommandResult;
using broker::testing::read_file;
using broker::testing::run_command;
using broker::testing::TempDir;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::string starling_bin() { return std::string(STARLING_BIN_DIR) + "/starling"; }

// The JSON lines of tail's output (stderr's log lines, if any, left out).
std::vector<json> json_lines(const std::string& output) {
  std::vector<json> out;
  for (const auto& l : broker::testing::lines(output)) {
    if (l.starts_with("{\"")) out.push_back(json::parse(l));
  }
  return out;
}

// The JSON document in an output that may start with log lines.
json json_document(const std::string& output) {
  const auto start = output.find("{\n");
  if (start == std::string::npos) return nullptr;
  return json::parse(output.substr(start), nullptr, false);
}

v1::Envelope envelope(const std::string& event_id, const std::string& device, double battery) {
  v1::RideTelemetry r;
  r.set_event_id(event_id);
  r.set_device_id(device);
  r.set_battery_pct(battery);
  r.set_status(v1::RideTelemetry::RIDING);
  r.mutable_event_time()->set_seconds(1795428000);
  v1::Envelope e;
  e.set_event_id(event_id);
  e.set_saga_id("saga-" + device);
  e.set_seq(7);
  e.set_pipeline("ecowheels");
  e.set_device_id(device);
  e.set_event_time_ms(1795428000000);
  e.set_schema_name("starling.v1.RideTelemetry");
  e.set_schema_version(1);
  e.set_trace_id("trace-" + event_id);
  e.set_payload(r.SerializeAsString());
  return e;
}

class TopicsTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    broker_ = std::make_unique<BrokerProcess>(dir_.path(), std::vector<std::string>{"--partitions", "2"});
    auto p = kafka::KafkaProducer::create({broker_->bootstrap(), "topics-tail-test", {}});
    ASSERT_TRUE(p.has_value()) << p.error().message;
    producer_ = std::move(*p);
  }

  CommandResult starling(const std::string& args, int timeout_s = 60) {
    return run_command(starling_bin() + " " + args + " --kafka " + broker_->bootstrap(), timeout_s);
  }

  void produce(const std::vector<kafka::OutMessage>& msgs) {
    ASSERT_TRUE(kafka::produce_all(*producer_, msgs, 30s).has_value());
  }

  void produce_envelopes(const std::string& topic, const std::vector<v1::Envelope>& envs) {
    std::vector<kafka::OutMessage> msgs;
    msgs.reserve(envs.size());
    for (const auto& e : envs) {
      msgs.push_back({topic, e.device_id(), e.SerializeAsString(), {{kafka::kTraceHeader, e.trace_id()}}});
    }
    produce(msgs);
  }

  void create(const std::string& topic, int partitions) {
    auto r = starling("topics create " + topic + " --partitions " + std::to_string(partitions));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  TempDir dir_;
  std::unique_ptr<BrokerProcess> broker_;
  std::unique_ptr<kafka::KafkaProducer> producer_;
};

TEST_F(TopicsTailTest, CreateThenListAndDescribeShowThePartitionsTheRecordsAndTheConfig) {
  auto created = starling("topics create orders.raw --partitions 3 --config retention.ms=3600000");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_THAT(created.output, HasSubstr("created topic orders.raw: 3 partitions, replication 1"));
  std::vector<kafka::OutMessage> msgs;
  msgs.reserve(5);
  for (int i = 0; i < 5; ++i) msgs.push_back({"orders.raw", "key-" + std::to_string(i), "v", {}});
  produce(msgs);

  auto list = starling("topics list --json");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  json found;
  const json page = json_document(list.output);
  for (const auto& t : page["topics"]) {
    if (t["name"] == "orders.raw") found = t;
  }
  ASSERT_TRUE(found.is_object()) << list.output;
  EXPECT_EQ(found["partitions"], 3);
  EXPECT_EQ(found["replication"], 1);
  EXPECT_EQ(found["records"], 5);
  EXPECT_EQ(found["log_end"], 5);
  auto table = starling("topics");  // list is the default
  ASSERT_EQ(table.exit_code, 0) << table.output;
  std::cout << table.output;
  EXPECT_THAT(table.output, HasSubstr("TOPIC"));
  EXPECT_THAT(table.output, ::testing::ContainsRegex("orders\\.raw +3 +1 +5 +5"));

  auto describe = starling("topics describe orders.raw --json");
  ASSERT_EQ(describe.exit_code, 0) << describe.output;
  const json d = json_document(describe.output);
  ASSERT_EQ(d["partitions"].size(), 3u) << d.dump(1);
  int64_t records = 0;
  for (int p = 0; p < 3; ++p) {
    const auto& part = d["partitions"][p];
    EXPECT_EQ(part["partition"], p);
    EXPECT_EQ(part["leader"], 0);  // starling-broker is node 0
    EXPECT_EQ(part["replicas"], json::array({0}));
    EXPECT_EQ(part["low"], 0);
    records += part["high"].get<int64_t>();
  }
  EXPECT_EQ(records, 5);
  EXPECT_EQ(d["records"], 5);
  json retention;
  for (const auto& c : d["configs"]) {
    if (c["name"] == "retention.ms") retention = c;
  }
  ASSERT_TRUE(retention.is_object()) << d.dump(1);
  EXPECT_EQ(retention["value"], "3600000");
  EXPECT_EQ(retention["source"], "DYNAMIC_TOPIC_CONFIG");
  EXPECT_EQ(retention["is_default"], false);

  auto text = starling("topics describe orders.raw");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  std::cout << text.output;
  EXPECT_THAT(text.output, HasSubstr("PARTITION"));
  EXPECT_THAT(text.output, ::testing::ContainsRegex("retention\\.ms +3600000 +DYNAMIC_TOPIC_CONFIG"));
}

TEST_F(TopicsTailTest, CreateOfAnExistingTopicFailsNamingIt) {
  create("orders.raw", 2);
  auto again = starling("topics create orders.raw --partitions 4");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_THAT(again.output, HasSubstr("topic orders.raw already exists"));
  // Nothing changed: still 2 partitions.
  auto d = starling("topics describe orders.raw --json");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_EQ(json_document(d.output)["partitions"].size(), 2u);
}

TEST_F(TopicsTailTest, DescribeOfAMissingTopicExits1NamingItAndDoesNotCreateIt) {
  auto d = starling("topics describe no.such.topic");
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_THAT(d.output, HasSubstr("topic no.such.topic does not exist"));
  auto list = starling("topics list");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_THAT(list.output, Not(HasSubstr("no.such.topic")));
  auto tail = starling("tail no.such.topic");
  EXPECT_EQ(tail.exit_code, 1) << tail.output;
  EXPECT_THAT(tail.output, HasSubstr("no.such.topic"));
}

TEST_F(TopicsTailTest, ABadConfigExits2NamingTheArgumentAndCreatesNothing) {
  auto malformed = starling("topics create orders.raw --config retention.ms");
  EXPECT_EQ(malformed.exit_code, 2) << malformed.output;
  EXPECT_THAT(malformed.output, HasSubstr("--config 'retention.ms': expected key=value"));
  auto unknown = starling("topics create orders.raw --config no.such.config=1");
  EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
  EXPECT_THAT(unknown.output, HasSubstr("no.such.config"));
  auto d = starling("topics describe orders.raw");
  EXPECT_EQ(d.exit_code, 1) << d.output;
}

TEST_F(TopicsTailTest, TailPrintsEachEnvelopeAsOneDecodedJsonLineAndStopsAtTheEnd) {
  create("ecowheels.raw", 2);
  std::vector<v1::Envelope> sent;
  sent.reserve(6);
  for (int i = 0; i < 6; ++i) sent.push_back(envelope("ev-" + std::to_string(i), "bike-" + std::to_string(i), 10 + i));
  produce_envelopes("ecowheels.raw", sent);

  auto four = starling("tail ecowheels.raw --max 4");
  ASSERT_EQ(four.exit_code, 0) << four.output;
  EXPECT_EQ(json_lines(four.output).size(), 4u) << four.output;

  // Without --max it stops at the end of the partitions as they were.
  auto all = starling("tail ecowheels.raw", 30);
  ASSERT_EQ(all.exit_code, 0) << all.output;
  const auto lines = json_lines(all.output);
  ASSERT_EQ(lines.size(), 6u) << all.output;
  std::cout << lines.front().dump() << "\n";
  std::set<std::string> ids;
  for (const auto& l : lines) {
    EXPECT_EQ(l["topic"], "ecowheels.raw");
    EXPECT_TRUE(l["partition"] == 0 || l["partition"] == 1) << l;
    EXPECT_TRUE(l["offset"].is_number()) << l;
    EXPECT_TRUE(l["timestamp"].get<std::string>().ends_with("Z")) << l;
    EXPECT_FALSE(l.contains("error")) << l;
    const auto& v = l["value"];
    const std::string id = v["event_id"];
    const int i = std::stoi(id.substr(3));
    ids.insert(id);
    EXPECT_EQ(l["key"], "bike-" + std::to_string(i));
    EXPECT_EQ(l["headers"]["trace-id"], "trace-" + id);
    EXPECT_EQ(v["saga_id"], "saga-bike-" + std::to_string(i));
    EXPECT_EQ(v["seq"], 7);
    EXPECT_EQ(v["schema_name"], "starling.v1.RideTelemetry");
    // The payload decoded as its schema_name says, not base64.
    ASSERT_TRUE(v["payload"].is_object()) << l;
    EXPECT_EQ(v["payload"]["battery_pct"], 10 + i);
    EXPECT_EQ(v["payload"]["status"], "RIDING");
    EXPECT_EQ(v["payload"]["event_time"], "2026-11-23T10:00:00Z");
  }
  EXPECT_EQ(ids.size(), 6u);
}

TEST_F(TopicsTailTest, FactsRejectsAndOutcomesDecodeByTopicNameAndTypeOverrides) {
  v1::ProgressFact fact;
  fact.set_saga_id("saga-1");
  fact.set_pipeline("ecowheels");
  fact.set_step(v1::STEP_CLEANED);
  auto* range = fact.add_seqs();
  range->set_first(0);
  range->set_last(9);
  v1::RejectedRecord rejected;
  *rejected.mutable_envelope() = envelope("ev-r", "bike-r", 250);
  auto* reason = rejected.add_reasons();
  reason->set_rule("range");
  reason->set_field("battery_pct");
  rejected.set_stage("clean");
  v1::SagaOutcome outcome;
  outcome.set_saga_id("saga-1");
  outcome.set_state(v1::SAGA_STATE_COMPLETED);
  outcome.set_total(10);
  produce({{"starling.saga", "saga-1", fact.SerializeAsString(), {}},
           {"ecowheels.rejected", "bike-r", rejected.SerializeAsString(), {}},
           {"starling.saga.outcomes", "saga-1", outcome.SerializeAsString(), {}}});

  auto f = json_lines(starling("tail starling.saga").output);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["type"], "starling.v1.ProgressFact");
  EXPECT_EQ(f[0]["value"]["step"], "STEP_CLEANED");
  EXPECT_EQ(f[0]["value"]["seqs"][0]["last"], 9);

  auto r = json_lines(starling("tail ecowheels.rejected").output);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["type"], "starling.v1.RejectedRecord");
  EXPECT_EQ(r[0]["value"]["reasons"][0]["field"], "battery_pct");
  EXPECT_EQ(r[0]["value"]["envelope"]["payload"]["battery_pct"], 250);

  auto o = json_lines(starling("tail starling.saga.outcomes").output);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0]["value"]["state"], "SAGA_STATE_COMPLETED");
  EXPECT_EQ(o[0]["value"]["total"], 10);

  // --type: the same fact bytes read raw, and as a fact from a topic whose
  // name says nothing.
  auto raw = json_lines(starling("tail starling.saga --type raw").output);
  ASSERT_EQ(raw.size(), 1u);
  EXPECT_FALSE(raw[0].contains("type"));
  EXPECT_FALSE(raw[0]["value"].is_object());
  produce({{"side.topic", "k", fact.SerializeAsString(), {}}});
  auto typed = json_lines(starling("tail side.topic --type fact").output);
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_EQ(typed[0]["value"]["saga_id"], "saga-1");
  auto bad = starling("tail side.topic --type nonsense");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--type 'nonsense'"));
}

TEST_F(TopicsTailTest, AnUndecodableRecordIsPrintedWithItsBytesAndAnErrorAndTheTailGoesOn) {
  create("ecowheels.clean", 1);
  auto bad_payload = envelope("ev-bad-payload", "bike-1", 1);
  bad_payload.set_payload(std::string(5, '\xff'));
  produce({{"ecowheels.clean", "bike-1", envelope("ev-0", "bike-1", 50).SerializeAsString(), {}},
           {"ecowheels.clean", "bike-1", std::string(5, '\xff'), {}},
           {"ecowheels.clean", "bike-1", bad_payload.SerializeAsString(), {}},
           {"ecowheels.clean", "bike-1", envelope("ev-2", "bike-1", 52).SerializeAsString(), {}}});
  auto r = starling("tail ecowheels.clean");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = json_lines(r.output);
  ASSERT_EQ(lines.size(), 4u) << r.output;
  std::cout << lines[1].dump() << "\n" << lines[2].dump() << "\n";
  EXPECT_EQ(lines[0]["value"]["event_id"], "ev-0");
  EXPECT_EQ(lines[1]["offset"], 1);
  EXPECT_THAT(lines[1]["error"].get<std::string>(), HasSubstr("not a valid starling.v1.Envelope"));
  EXPECT_EQ(lines[1]["value_base64"], "//////8=");
  EXPECT_FALSE(lines[1].contains("value"));
  // An envelope whose payload does not decode: the envelope, its payload in
  // base64 and why.
  EXPECT_EQ(lines[2]["value"]["event_id"], "ev-bad-payload");
  EXPECT_EQ(lines[2]["value"]["payload"], "//////8=");
  EXPECT_THAT(lines[2]["value"]["payload_error"].get<std::string>(), HasSubstr("starling.v1.RideTelemetry"));
  EXPECT_EQ(lines[3]["value"]["payload"]["battery_pct"], 52);
}

TEST_F(TopicsTailTest, FromATimeSkipsOlderRecords) {
  create("ecowheels.raw", 2);
  produce_envelopes("ecowheels.raw",
                    {envelope("old-1", "bike-1", 1), envelope("old-2", "bike-2", 2), envelope("old-3", "bike-3", 3)});
  std::this_thread::sleep_for(1100ms);
  const int64_t cut = now_ms();
  std::this_thread::sleep_for(100ms);
  produce_envelopes("ecowheels.raw", {envelope("new-1", "bike-1", 4), envelope("new-2", "bike-2", 5)});

  std::set<std::string> ids;
  for (const auto& l : json_lines(starling("tail ecowheels.raw --from " + rfc3339(cut)).output)) {
    ids.insert(l["value"]["event_id"]);
  }
  EXPECT_EQ(ids, (std::set<std::string>{"new-1", "new-2"}));
  // Unix ms says the same; a duration counts back from now.
  EXPECT_EQ(json_lines(starling("tail ecowheels.raw --from " + std::to_string(cut)).output).size(), 2u);
  EXPECT_EQ(json_lines(starling("tail ecowheels.raw --from 10m").output).size(), 5u);
  EXPECT_EQ(json_lines(starling("tail ecowheels.raw --from 1d --max 3").output).size(), 3u);

  auto bad = starling("tail ecowheels.raw --from yesterday");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--from 'yesterday'"));
}

TEST_F(TopicsTailTest, FollowPrintsARecordProducedAfterItStartedAndStopsOnSigterm) {
  create("ecowheels.raw", 2);
  produce_envelopes("ecowheels.raw", {envelope("before", "bike-1", 1)});
  const std::string out = (dir_.path() / "tail.out").string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    const std::string bin = starling_bin();
    const std::string bootstrap = broker_->bootstrap();
    ::execl(bin.c_str(), bin.c_str(), "tail", "ecowheels.raw", "--follow", "--kafka", bootstrap.c_str(), nullptr);
    ::_exit(127);
  }
  ASSERT_GT(pid, 0);
  auto wait_for_lines = [&](std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (json_lines(read_file(out)).size() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50ms);
    }
    return json_lines(read_file(out));
  };
  auto seen = wait_for_lines(1);
  ASSERT_EQ(seen.size(), 1u) << read_file(out);
  EXPECT_EQ(seen[0]["value"]["event_id"], "before");

  // It has read to the end and keeps waiting: a record produced now comes.
  std::this_thread::sleep_for(500ms);
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "tail --follow exited on its own: " << read_file(out);
  produce_envelopes("ecowheels.raw", {envelope("after", "bike-2", 2)});
  seen = wait_for_lines(2);
  ASSERT_EQ(seen.size(), 2u) << read_file(out);
  EXPECT_EQ(seen[1]["value"]["event_id"], "after");

  ::kill(pid, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + 10s;
  pid_t r = 0;
  while ((r = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
  }
  if (r == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "tail --follow did not stop within 10 s of SIGTERM";
  }
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(out);
}

TEST_F(TopicsTailTest, TailOfAnEmptyTopicPrintsNothingAndExits) {
  create("ecowheels.raw", 2);
  auto r = starling("tail ecowheels.raw", 20);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(json_lines(r.output).empty()) << r.output;
}

}  // namespace
}  // namespace starling::cli
