# Python tests: a second implementation of the protocol, written from
# proto/PROTOCOL.md alone, against the real broker and drone.
# waggle_py_test(NAME TIMEOUT): tests/py/test_NAME.py, labelled "e2e".
function(waggle_py_test name timeout)
  waggle_test_source(py/test_${name}.py)
  add_test(NAME e2e_py_${name}
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/py/run.sh ${name}
            ${CMAKE_BINARY_DIR})
  set_tests_properties(e2e_py_${name} PROPERTIES LABELS e2e
    TIMEOUT ${timeout} SKIP_RETURN_CODE ${WAGGLE_SKIP_CODE})
endfunction()

waggle_py_test(pyclient 180)
waggle_py_test(conformance 120)
waggle_py_test(result_error 120)
waggle_py_test(pyrestart 180)
waggle_py_test(pygate 120)
