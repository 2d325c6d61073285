# One line per end-to-end test: waggle_e2e_test(NAME TIMEOUT_SECONDS)
waggle_e2e_test(diamond 120)
waggle_e2e_test(flow 90)
