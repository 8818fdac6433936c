// Topic names and topic filters (MQTT 3.1.1 section 4.7, MQTT 5.0 section 4.7) and UTF-8 string
// rules (3.1.1 section 1.5.3).
#pragma once

#include <string_view>

namespace mqtt_proxy::mqtt {

enum class Utf8Status { Ok, Invalid, ContainsNull };

// Well-formed UTF-8 without overlong forms, surrogates (U+D800..U+DFFF) or code points above
// U+10FFFF; U+0000 is reported separately because the specification names it on its own
// [MQTT-1.5.3-2].
Utf8Status check_utf8(std::string_view s);

// A value that can go on the wire as an MQTT UTF-8 string (1.5.4): at most 65535 bytes,
// well-formed, no U+0000. What the decoder already checked of what a client sent; to be checked of
// what a hook made of it, before it is encoded with a 16-bit length (a longer one would spill into
// the fields after it).
bool is_mqtt_string(std::string_view s);

// A topic name as a PUBLISH carries it: at least one character, no wildcards [MQTT-3.3.2-2].
bool is_valid_topic_name(std::string_view topic);

// A topic filter: at least one character; '#' only alone in the last level; '+' only alone in a
// level [MQTT-4.7.1-2], [MQTT-4.7.1-3].
bool is_valid_topic_filter(std::string_view filter);

// Whether `filter` matches `topic`. Topics starting with '$' are not matched by a filter that
// starts with a wildcard [MQTT-4.7.2-1]. Both arguments are assumed valid.
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace mqtt_proxy::mqtt
