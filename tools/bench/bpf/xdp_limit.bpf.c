// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bench's reference forwarders on node A (tools/bench/limit.rs), built by
 * tools/bench/build.rs. One object is loaded per interface; the loader fills `config`
 * (xdp_limit) or `xsks` (xsk_limit) before it attaches.
 *
 * - xdp_limit: what in-kernel forwarding on veth can do at all: IPv4 frames get the
 *   configured MACs, TTL - 1 with an incremental checksum, and bpf_redirect() to the
 *   configured interface. Everything else (ARP, TTL <= 1) goes to the kernel.
 * - xsk_limit: hands every IPv4 frame to the AF_XDP socket of its rx queue (the bare
 *   AF_XDP forwarder does the rest); everything else, or a queue without a socket, goes
 *   to the kernel.
 *
 * bpf_redirect() is GPL-only, hence the dual licence (the bench itself is Apache-2.0).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct limit_config {
	__u8 dst_mac[ETH_ALEN];
	__u8 src_mac[ETH_ALEN];
	__u32 out_ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct limit_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

/* TTL - 1 with the checksum fixed up carry-correctly (RFC 1624; as xdp-tools' and the
 * kernel's ip_decrease_ttl): the TTL is the high byte of its 16-bit word. */
static __always_inline void ip_decrease_ttl(struct iphdr *iph)
{
	__u32 check = (__u32)iph->check;

	check += (__u32)bpf_htons(0x0100);
	iph->check = (__sum16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

SEC("xdp")
int xdp_limit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);
	struct limit_config *cfg;
	__u32 key = 0;

	if ((void *)(iph + 1) > data_end)
		return XDP_PASS; /* too short for IPv4: not ours */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS; /* ARP and the rest: the kernel's */
	if (iph->ttl <= 1)
		return XDP_PASS; /* the kernel sends the ICMP time exceeded */
	cfg = bpf_map_lookup_elem(&config, &key);
	if (!cfg || !cfg->out_ifindex)
		return XDP_PASS; /* not configured yet */
	ip_decrease_ttl(iph);
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->src_mac, ETH_ALEN);
	return bpf_redirect(cfg->out_ifindex, 0);
}

SEC("xdp")
int xsk_limit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS; /* ARP and the rest: the kernel's */
	/* No socket on this queue: the kernel's (XDP_PASS as the fallback action). */
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
