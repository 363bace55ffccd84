#include "services/common/text.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace starling {
namespace {

TEST(Text, Utf8IsCheckedByteByByte) {
  EXPECT_TRUE(is_utf8(""));
  EXPECT_TRUE(is_utf8("bike-1 \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\xB2"));  // é € 🚲
  EXPECT_FALSE(is_utf8("\xFF"));
  EXPECT_FALSE(is_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_utf8("\xED\xA0\x80"));      // a surrogate
  EXPECT_FALSE(is_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(is_utf8("\xE2\x82"));          // cut short
}

TEST(Text, Utf8SafeReplacesEachBadByteAndKeepsTheRest) {
  EXPECT_EQ(utf8_safe("a\xFF"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(utf8_safe("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_safe("\xC3\xA9"), "\xC3\xA9");
  EXPECT_TRUE(is_utf8(utf8_safe("\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80")));
}

TEST(Text, ExcerptCutsLongValuesAndKeepsShortOnes) {
  EXPECT_EQ(excerpt("bike-1"), "bike-1");
  EXPECT_EQ(excerpt(std::string(300'000, 'x'), 4), "xxxx\u2026");
  EXPECT_EQ(excerpt("\xC3\xA9\xC3\xA9", 3), "\xC3\xA9\xEF\xBF\xBD\u2026");  // a cut sequence is replaced
}

TEST(Text, JsonTextNeverThrowsOnClientBytes) {
  const nlohmann::json j = {{"path", std::string("/\xFF")}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);  // what every echo did before
  EXPECT_EQ(json_text(j), "{\"path\":\"/\xEF\xBF\xBD\"}");
}

TEST(Text, DepthIsFoundWithoutRecursion) {
  EXPECT_EQ(json_too_deep(R"({"a": [1, {"b": 2}]})", 3), std::nullopt);
  EXPECT_EQ(json_too_deep(R"({"a": [1, {"b": 2}]})", 2), 10u);
  EXPECT_EQ(json_too_deep(R"({"a": "[[[[[[[[\"[[[["})", 1), std::nullopt);  // brackets in strings don't count
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  EXPECT_EQ(json_too_deep(deep), kMaxJsonDepth);
  const std::string flat = R"([{"a":1},{"a":2},{"a":3}])";
  EXPECT_EQ(json_too_deep(flat), std::nullopt);
}

TEST(Text, SplitCommasKeepsTheNonEmptyItemsInOrder) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_commas(""), V{});
  EXPECT_EQ(split_commas(","), V{});
  EXPECT_EQ(split_commas("a"), V{"a"});
  EXPECT_EQ(split_commas("a,b"), (V{"a", "b"}));
  EXPECT_EQ(split_commas(",a,,b,"), (V{"a", "b"}));
  EXPECT_EQ(split_commas("http://h:1/x, y"), (V{"http://h:1/x", " y"}));
}

}  // namespace
}  // namespace starling
