#pragma once
// The supervisor behind `starling up`, `starling demo` and the e2e tests:
// runs the broker and every service as separate child processes, restarts a
// crashed one, and stops them in order.

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "services/common/error.h"
#include "services/common/pipeline.h"
#include "services/common/process.h"

namespace starling::supervisor {

struct StackOptions {
  std::string bin_dir;   // where the starling-* executables are
  std::string data_dir;  // one sub-folder per process
  std::vector<std::string> pipeline_files;
  std::string kafka;         // empty: run starling-broker here
  uint16_t ingest_port = 0;  // 0 picks a free port
  uint16_t saga_port = 0;
  std::string log_level = "info";
  bool restart_crashed = true;
  std::vector<std::string> load_args;    // extra flags for every starling-load (e.g. --sink postgres)
  std::vector<std::string> ingest_args;  // extra flags for starling-ingest (e.g. --mqtt host:port)
  /// Passed to every service: --kafka-properties-file and each --kafka-property
  /// (STARLING_KAFKA_* variables reach them through the environment).
  std::string kafka_properties_file;
  std::vector<std::string> kafka_properties;
  /// Configure the services through STARLING_* environment variables instead
  /// of flags, the way compose/docker-compose.yml does.
  bool config_by_env = false;
  /// Instances per stage (ingest, saga, clean, load; 1 when absent). The
  /// instances of a stage share its consumer group and each keeps its own
  /// data directory and instance id; a pipeline's loaders share its SQLite
  /// file (the offsets live there). See parse_instances().
  std::map<std::string, int> instances;
  /// MQTT for ingest's bridge: "" none; host:port, a mosquitto already
  /// running; kLocalMqtt, a mosquitto this stack starts (process `mosquitto`,
  /// loopback, a free port, its sessions persisted in <data-dir>/mosquitto).
  std::string mqtt;
};

inline constexpr const char* kLocalMqtt = "local";

/// The stages `--instances` may scale, and the most instances of one.
inline constexpr std::array<const char*, 4> kScalableStages = {"ingest", "saga", "clean", "load"};
inline constexpr int kMaxInstances = 16;
/// Parses `clean=2,load=2,saga=2`: a stage of kScalableStages, then a count
/// in 1..kMaxInstances. Errors name the entry and what was expected.
Result<std::map<std::string, int>> parse_instances(const std::string& spec);
/// The process name of instance `i` (1-based) of `base` (ingest, saga,
/// clean.<p>, load.<p>): the base itself for the first, `<base>.<i>` after.
std::string instance_name(const std::string& base, int i);

class Stack {
 public:
  explicit Stack(StackOptions options);
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  /// Starts the broker (unless --kafka), creates the topics, starts every
  /// service and waits until their HTTP ports are bound.
  Status start();
  /// Stops services, then the broker: SIGTERM, SIGKILL after a grace period.
  void stop();

  const std::string& bootstrap() const { return bootstrap_; }
  /// The embedded broker's /metrics address (host:port); empty with --kafka.
  const std::string& broker_metrics() const { return broker_metrics_; }
  /// The mosquitto ingest's bridge reads (host:port); empty without MQTT.
  const std::string& mqtt_address() const { return mqtt_; }
  /// The first instance's address; ingest_urls() and saga_urls() list all.
  std::string ingest_url() const;
  std::string saga_url() const;
  std::vector<std::string> ingest_urls() const;
  /// Each saga instance answers for the sagas of its partitions: add their
  /// totals (simulator::fetch_totals over every one) for the whole pipeline.
  std::vector<std::string> saga_urls() const;
  /// Instances of a stage (ingest, saga, clean, load) this stack runs.
  int instances(const std::string& stage) const;
  /// http://127.0.0.1:<port> of a service's HTTP (probes, /metrics, its API).
  std::string url(const std::string& process) const;
  const std::vector<PipelineConfig>& pipelines() const { return pipelines_; }
  std::string db_path(const std::string& pipeline) const;
  std::string log_path(const std::string& process) const;

  /// Process names: broker, ingest, saga, clean.<p>, load.<p>, and extract when a
  /// pipeline declares a source; a stage's second and later instances add
  /// `.2`, `.3`, … (instance_name()).
  std::vector<std::string> processes() const;
  /// Sends a signal to a process (tests kill with SIGKILL at the worst moment).
  Status signal(const std::string& process, int sig);
  /// Starts a process that is not running (when restart_crashed is off).
  Status restart(const std::string& process);
  bool running(const std::string& process);
  /// Restarts seen so far, per process.
  int restarts(const std::string& process);
  /// The wait status of each exit the supervisor saw, oldest first; after
  /// stop(), the last one is how the process ended then.
  std::vector<int> exits(const std::string& process);

 private:
  struct Child {
    std::string name;
    std::vector<std::string> argv;
    std::vector<std::pair<std::string, std::string>> env;
    ChildProcess proc;
    int restarts = 0;
    std::vector<int> exits;
    bool wanted = true;
  };
  Status spawn(Child& c);
  /// The HTTP address of every instance of a stage.
  std::vector<std::string> urls(const std::string& stage) const;
  /// Starts the local mosquitto of StackOptions::mqtt == kLocalMqtt.
  Status start_mosquitto();
  Status add(const std::string& name, std::vector<std::string> argv,
             std::vector<std::pair<std::string, std::string>> env = {});
  void supervise();

  StackOptions opts_;
  std::vector<PipelineConfig> pipelines_;
  std::string bootstrap_;
  std::string broker_metrics_;
  std::string mqtt_;
  std::map<std::string, uint16_t> ports_;  // HTTP port per service
  std::mutex mu_;
  std::map<std::string, Child> children_;
  std::vector<std::string> order_;
  std::thread supervisor_;
  bool stopping_ = false;
};

}  // namespace starling::supervisor
