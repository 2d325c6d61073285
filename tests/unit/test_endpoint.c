// Unit tests for endpoint: what is accepted, and what a refusal says.
#include "common/endpoint.h"
#include "tests/harness/t.h"

static void
test_accepted(void)
{
    const char *good[] = {
        "tcp://127.0.0.1:7600", "tcp://*:7600", "tcp://broker.example:1",
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:*", "tcp://[::1]:7600",
        "tcp://[fe80::1%eth0]:65535", "tcp://eth0:7600",
        "ipc:///run/waggle.sock", "ipc://@waggle", "ipc://relative.sock",
    };
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        err[0] = '\0';
        if (endpoint_check(good[i], err, sizeof err) != 0) {
            fprintf(stderr, "refused '%s': %s\n", good[i], err);
            t_failures++;
        }
    }
}

// Each refusal names the endpoint and what to write instead.
static void
test_refused(void)
{
    const struct {
        const char *text;
        const char *says;
    } bad[] = {
        {"127.0.0.1:7600", "needs tcp:// or ipc:// in front (e.g. "
                           "tcp://127.0.0.1:7600)"},
        {"localhost", "e.g. tcp://127.0.0.1:7600"},
        {"", "the endpoint is empty"},
        {"udp://127.0.0.1:7600", "tcp:// and ipc:// only"},
        {"inproc://x", "tcp:// and ipc:// only"},
        {"tcp://127.0.0.1", "has no port"},
        {"tcp://127.0.0.1:", "port '' is not 1-65535"},
        {"tcp://127.0.0.1:65536", "port '65536' is not 1-65535"},
        {"tcp://127.0.0.1:76x0", "port '76x0'"},
        {"tcp://127.0.0.1:-1", "port '-1'"},
        {"tcp://:7600", "has no host"},
        {"tcp://::1:7600", "goes in brackets"},
        {"tcp://[::1]", "has no port"},
        {"tcp://a b:7600", "'a b' is not a host name"},
        {"tcp://host/x:7600", "is not a host name"},
        {"ipc://", "has no path"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK_INT(endpoint_check(bad[i].text, err, sizeof err), -1);
        CHECK_HAS(err, bad[i].says);
    }
}

static void
test_ipc_length(void)
{
    char text[6 + ENDPOINT_IPC_MAX + 2] = "ipc://";
    memset(text + 6, 'a', ENDPOINT_IPC_MAX);
    text[6 + ENDPOINT_IPC_MAX] = '\0';
    char err[512];
    CHECK_INT(endpoint_check(text, err, sizeof err), 0);
    text[6 + ENDPOINT_IPC_MAX] = 'a';
    text[6 + ENDPOINT_IPC_MAX + 1] = '\0';
    CHECK_INT(endpoint_check(text, err, sizeof err), -1);
    CHECK_HAS(err, "more than a Unix socket takes (107)");
}

static const t_case_t t_cases[] = {
    T(test_accepted),
    T(test_refused),
    T(test_ipc_length),
    {0},
};

T_MAIN(t_cases)
