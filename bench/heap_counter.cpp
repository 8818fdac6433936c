#include "heap_counter.hpp"

#include <malloc.h>

#include <cstdlib>
#include <new>

namespace {
std::int64_t g_live_bytes = 0;  // the benchmarks are single-threaded
std::uint64_t g_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (!p) throw std::bad_alloc();
  g_live_bytes += static_cast<std::int64_t>(malloc_usable_size(p));
  ++g_allocations;
  return p;
}
void operator delete(void* p) noexcept {
  if (!p) return;
  g_live_bytes -= static_cast<std::int64_t>(malloc_usable_size(p));
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  operator delete(p);
}

namespace mqtt_proxy::bench {

std::int64_t live_heap_bytes() {
  return g_live_bytes;
}

std::uint64_t allocations() {
  return g_allocations;
}

}  // namespace mqtt_proxy::bench
