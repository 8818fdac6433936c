// Live heap bytes of this process, counted by replacing the global allocation functions (in
// heap_counter.cpp, a translation unit of its own so no caller sees through the replacement).
#pragma once

#include <cstdint>

namespace mqtt_proxy::bench {

std::int64_t live_heap_bytes();
// Calls of operator new so far.
std::uint64_t allocations();

}  // namespace mqtt_proxy::bench
