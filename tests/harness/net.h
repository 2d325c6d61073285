// net: network namespaces, veths, bridges and iptables for the e2e tests
// that cut or degrade real links (no tc netem here: PITFALLS.md).
//
// Names a test makes start with a prefix and its pid (e.g. "wgf1234",
// "wgfh1234"), so that a run that died (its pid gone) can be swept by the
// next one.  Everything runs through /bin/sh -c; nothing here is async.
#ifndef WAGGLE_NET_H
#define WAGGLE_NET_H

#include <stdbool.h>

// Runs a shell command line; returns its exit code.  Output is dropped
// unless it fails (then it goes to stderr, for the log).
int net_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// NULL when this process can make namespaces and veth pairs (root, the
// `ip` program), else why not (the test then skips).
const char *net_usable(void);
// The path of the `ip` program, for wrappers ("ip netns exec NS ...").
const char *net_ip(void);
// Deletes namespaces and links whose name is prefix, optional letters, then
// the pid of a process that is gone: what a run killed mid-test left.
void net_sweep_stale(const char *prefix);

#endif
