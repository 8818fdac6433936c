// The entry point libFuzzer calls with every input; each target defines it. Declared here so that
// definition has a declaration before it, as -Wmissing-declarations asks of every global function.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
