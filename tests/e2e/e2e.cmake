# End-to-end tests: real broker, drones and architect on loopback.
add_library(waggle_e2e STATIC harness/proc.c harness/swarm.c harness/attempts.c
  harness/net.c
  harness/llm.c
  harness/peer.c)
target_link_libraries(waggle_e2e PUBLIC waggle_t waggle_broker_core)
target_compile_definitions(waggle_e2e PUBLIC
  WAGGLE_BUILD_DIR="${CMAKE_BINARY_DIR}")

# waggle_e2e_test(NAME [TIMEOUT s]): tests/e2e/test_NAME.c, labelled "e2e".
function(waggle_e2e_test name timeout)
  waggle_test_source(e2e/test_${name}.c)
  add_executable(e2e_${name} e2e/test_${name}.c)
  target_link_libraries(e2e_${name} PRIVATE waggle_e2e waggle_broker_core
    waggle_proto)
  add_dependencies(e2e_${name} waggle-broker waggle-drone waggle-architect
    fake_llm)
  add_test(NAME e2e_${name} COMMAND e2e_${name})
  set_tests_properties(e2e_${name} PROPERTIES LABELS e2e TIMEOUT ${timeout}
    SKIP_RETURN_CODE ${WAGGLE_SKIP_CODE})
endfunction()

include(e2e/list.cmake)
