#include "services/common/ids.h"

#include <gtest/gtest.h>

#include <string>

namespace starling {
namespace {

TEST(Traceparent, AWellFormedHeaderGivesItsTraceId) {
  EXPECT_EQ(traceparent_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  // A later version may carry more fields after a '-'.
  EXPECT_EQ(traceparent_trace_id("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST(Traceparent, AnythingElseIsRefused) {
  const std::string cases[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",         // short
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",      // version 00 is exactly 55
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",       // a later version goes on after '-'
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",        // version ff is invalid
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",        // uppercase
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",        // all-zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",        // all-zero parent id
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",        // separator
      "00-4bf92f3577b34da6a3ce929d0e0e47\xff\xfe-00f067aa0ba902b7-01",  // not hex, not UTF-8
  };
  for (const auto& h : cases) EXPECT_EQ(traceparent_trace_id(h), std::nullopt) << h;
}

}  // namespace
}  // namespace starling
