# Run by ctest after the simulation tests were discovered (see CMakeLists.txt): they carry the
# labels unit and sim.
foreach(test IN LISTS unit_tests_SIM)
  set_tests_properties("${test}" PROPERTIES LABELS "unit;sim")
endforeach()
