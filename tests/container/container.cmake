# Deployment tests, labelled "container" (not "e2e"): the image built and
# run with Podman, compose, Kubernetes and systemd files checked offline.
# tests/run.sh runs them in a step of their own; each exits 77 (skipped)
# when its tool (podman, docker-compose, systemd-analyze) is missing;
# metrics needs only the built broker and python3.
# waggle_container_test(SCRIPT TIMEOUT): tests/container/SCRIPT.sh.
function(waggle_container_test name timeout)
  waggle_test_source(container/${name}.sh)
  add_test(NAME container_${name}
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/container/${name}.sh
            ${CMAKE_BINARY_DIR})
  set_tests_properties(container_${name} PROPERTIES LABELS container
    TIMEOUT ${timeout} SKIP_RETURN_CODE ${WAGGLE_SKIP_CODE})
endfunction()

waggle_container_test(image 1200)
waggle_container_test(compose 120)
waggle_container_test(k8s 120)
waggle_container_test(systemd 60)
waggle_container_test(metrics 120)
