// SPDX-License-Identifier: Apache-2.0
/* Test fixture: reads the packet without a bounds check, so the verifier rejects it.
 * src/xdp.rs uses it to check that a rejection carries the verifier's log. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unchecked_read(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[12] == 0x08 ? XDP_PASS : XDP_DROP; /* no data_end check: rejected */
}

char LICENSE[] SEC("license") = "Apache-2.0";
