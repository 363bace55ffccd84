// `--instances`: what a user may ask for, and the names the instances get.

#include <gtest/gtest.h>

#include <string>

#include "services/supervisor/stack.h"

namespace starling::supervisor {
namespace {

TEST(Instances, ParsesAStageAndACountPerEntry) {
  auto got = parse_instances("clean=2,load=3,saga=2,ingest=16");
  ASSERT_TRUE(got.has_value()) << got.error().message;
  EXPECT_EQ(*got, (std::map<std::string, int>{{"clean", 2}, {"load", 3}, {"saga", 2}, {"ingest", 16}}));
  EXPECT_TRUE(parse_instances("")->empty());
  EXPECT_EQ(parse_instances("load=1,")->at("load"), 1);
}

TEST(Instances, RefusesWhatItCannotRunAndSaysWhichEntryAndWhatWasExpected) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"extract=2", "'extract=2': expected a stage of ingest, saga, clean, load"},
      {"broker=3", "'broker=3': expected a stage"},
      {"clean", "'clean': expected clean=N with N from 1 to 16"},
      {"clean=", "'clean=': expected clean=N"},
      {"clean=0", "'clean=0': expected clean=N with N from 1 to 16"},
      {"clean=17", "'clean=17'"},
      {"clean=-1", "'clean=-1'"},
      {"clean=2x", "'clean=2x'"},
      {"clean=99999999999999999999", "'clean=99999999999999999999'"},
      {"clean=2,clean=3", "clean is given twice"},
  };
  for (const auto& [spec, want] : bad) {
    auto got = parse_instances(spec);
    ASSERT_FALSE(got.has_value()) << spec;
    EXPECT_NE(got.error().message.find(want), std::string::npos) << spec << ": " << got.error().message;
  }
}

TEST(Instances, TheFirstKeepsTheStagesNameAndTheOthersAreNumbered) {
  EXPECT_EQ(instance_name("clean.ecowheels", 1), "clean.ecowheels");
  EXPECT_EQ(instance_name("clean.ecowheels", 2), "clean.ecowheels.2");
  EXPECT_EQ(instance_name("saga", 3), "saga.3");
}

}  // namespace
}  // namespace starling::supervisor
