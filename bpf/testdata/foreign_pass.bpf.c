// SPDX-License-Identifier: Apache-2.0
/* Test fixture: somebody else's XDP program, which podfwd must not remove. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int foreign_pass(struct xdp_md *ctx __attribute__((unused)))
{
	return XDP_PASS; /* passes everything */
}

char LICENSE[] SEC("license") = "Apache-2.0";
