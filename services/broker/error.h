#pragma once

#include <cstdint>
#include <expected>
#include <string>

namespace starling::broker {

/// Kafka protocol error codes (the subset this broker produces). Values are
/// fixed by the wire protocol, see apache/kafka Errors.java.
enum class ErrorCode : int16_t {
  kUnknownServerError = -1,
  kNone = 0,
  kOffsetOutOfRange = 1,
  kCorruptMessage = 2,
  kUnknownTopicOrPartition = 3,
  kInvalidFetchSize = 4,
  kLeaderNotAvailable = 5,
  kRequestTimedOut = 7,
  kMessageTooLarge = 10,
  kCoordinatorNotAvailable = 15,
  kNotCoordinator = 16,
  kInvalidTopic = 17,
  kRecordListTooLarge = 18,
  kInvalidRequiredAcks = 21,
  kIllegalGeneration = 22,
  kInconsistentGroupProtocol = 23,
  kInvalidGroupId = 24,
  kUnknownMemberId = 25,
  kInvalidSessionTimeout = 26,
  kRebalanceInProgress = 27,
  kUnsupportedVersion = 35,
  kTopicAlreadyExists = 36,
  kInvalidPartitions = 37,
  kInvalidReplicationFactor = 38,
  kInvalidReplicaAssignment = 39,
  kInvalidConfig = 40,
  kInvalidRequest = 42,
  kUnsupportedForMessageFormat = 43,
  kOutOfOrderSequenceNumber = 45,
  kDuplicateSequenceNumber = 46,
  kInvalidProducerEpoch = 47,
  kKafkaStorageError = 56,
  kUnknownProducerId = 59,
  kNonEmptyGroup = 68,
  kGroupIdNotFound = 69,
  kFencedInstanceId = 82,
  kInvalidRecord = 87,
};

/// An error value on the data path: a code plus a message naming what was wrong.
struct Error {
  ErrorCode code = ErrorCode::kUnknownServerError;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace starling::broker
