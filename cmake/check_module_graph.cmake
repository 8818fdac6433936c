# Fails when the modules' #include lines form a cycle.
#
# A module is a folder: include/mqtt_proxy/<m>/ and src/<m>/ belong to module <m>, and a line
# `#include "mqtt_proxy/<d>/..."` in one of its files is an edge m -> d. The modules must form a DAG,
# so that each one can be read, built and tested knowing only the ones below it.
#
#   cmake -DROOT=<source dir> [-DSTAMP=<file to touch on success>] -P check_module_graph.cmake
cmake_minimum_required(VERSION 3.22)
if(NOT ROOT)
  message(FATAL_ERROR "check_module_graph: pass -DROOT=<source dir>")
endif()

get_filename_component(ROOT "${ROOT}" ABSOLUTE)
file(GLOB_RECURSE files RELATIVE "${ROOT}" "${ROOT}/include/mqtt_proxy/*.hpp" "${ROOT}/src/*.cpp"
     "${ROOT}/src/*.hpp")
set(modules "")
foreach(f IN LISTS files)
  # Two if()s: the second MATCHES of an OR would run, fail and clear CMAKE_MATCH_1.
  if(f MATCHES "^include/mqtt_proxy/([a-z0-9_]+)/")
    set(m "${CMAKE_MATCH_1}")
  elseif(f MATCHES "^src/([a-z0-9_]+)/")
    set(m "${CMAKE_MATCH_1}")
  else()
    continue()
  endif()
  list(APPEND modules "${m}")
  # file(READ), not file(STRINGS): the latter skips lines with bytes it deems binary (UTF-8 text).
  file(READ "${ROOT}/${f}" text)
  string(REGEX MATCHALL "#[ \t]*include[ \t]+\"mqtt_proxy/[a-z0-9_]+/" lines "${text}")
  foreach(line IN LISTS lines)
    string(REGEX MATCH "mqtt_proxy/([a-z0-9_]+)/" unused "${line}")
    set(d "${CMAKE_MATCH_1}")
    if(d STREQUAL m)
      continue()
    endif()
    list(APPEND deps_${m} "${d}")
    if(NOT DEFINED via_${m}_${d})
      set(via_${m}_${d} "${f}")
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES modules)

# Kahn's algorithm from the leaves: a module whose dependencies are all gone goes too. What stays
# holds a cycle.
set(left ${modules})
set(progress TRUE)
while(progress)
  set(progress FALSE)
  foreach(m IN LISTS left)
    set(blocked FALSE)
    foreach(d IN LISTS deps_${m})
      if(d IN_LIST left)
        set(blocked TRUE)
        break()
      endif()
    endforeach()
    if(NOT blocked)
      list(REMOVE_ITEM left "${m}")
      set(progress TRUE)
    endif()
  endforeach()
endwhile()

if(left)
  # Walk from a module that is left along dependencies that are left until one repeats.
  list(GET left 0 m)
  set(path "${m}")
  while(TRUE)
    foreach(d IN LISTS deps_${m})
      if(d IN_LIST left)
        set(next "${d}")
        break()
      endif()
    endforeach()
    set(edge "  ${m} -> ${next}: ${via_${m}_${next}}")
    list(APPEND edges "${edge}")
    if(next IN_LIST path)
      break()
    endif()
    list(APPEND path "${next}")
    set(m "${next}")
  endwhile()
  # Report only the cycle itself, from the module that closes it.
  list(FIND path "${next}" start)
  list(SUBLIST edges ${start} -1 cycle)
  list(JOIN cycle "\n" text)
  message(FATAL_ERROR "module include cycle (each line: module -> module it includes, first file):\n${text}")
endif()

if(STAMP)
  file(TOUCH "${STAMP}")
endif()
