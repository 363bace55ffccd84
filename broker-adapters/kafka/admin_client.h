#pragma once
// A bare librdkafka client for Metadata, ListOffsets and the admin API,
// configured as every other client of this library is (bootstrap, client id,
// the user's properties, logs through spdlog). Internal to broker-adapters/kafka.

#include <librdkafka/rdkafka.h>

#include <memory>

#include "broker-adapters/kafka/kafka.h"

namespace starling::kafka {

using AdminClient = std::unique_ptr<rd_kafka_t, decltype(&rd_kafka_destroy)>;

/// An error names a refused property and where it came from.
Result<AdminClient> admin_client(const KafkaOptions& options);

}  // namespace starling::kafka
