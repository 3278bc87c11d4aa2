// SPDX-License-Identifier: Apache-2.0
/*
 * podfwd_xdp: hands podfwd's AF_XDP workers the frames podfwd owns and gives every other
 * frame to the kernel with XDP_PASS. One instance per interface; the control thread sets
 * the interface's role and the node's addresses in `config` and the peer pod subnets in
 * `routes`, and registers one AF_XDP socket per rx queue in `xsks`. When no socket is
 * registered for a queue (podfwd starting, stopping, or a worker gone), owned frames fall
 * back to the kernel too. Maps and rules: docs/xdp.md.
 *
 * Only helpers that are not GPL-only are used (map lookup, redirect_map), so the
 * program carries the project's license.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "podfwd_xdp.h"

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct podfwd_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PODFWD_MAX_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct podfwd_route_key);
	__type(value, __u32);
} routes SEC(".maps");

/* key_size/value_size instead of BTF types: XSKMAP does not take BTF key/value types,
 * and libbpf would warn and retry without them. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PODFWD_MAX_QUEUES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PODFWD_STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &stat);

	if (c)
		*c += 1; /* this CPU's slot: no atomic needed */
}

static __always_inline int pass(__u32 stat)
{
	count(stat);
	return XDP_PASS;
}

/* podfwd owns the frame: redirect it to the AF_XDP socket of the queue it arrived on. */
static __always_inline int owned(struct xdp_md *ctx, __u32 why)
{
	int action;

	count(why);
	/* The low bits of the flags are the action when the queue has no socket. */
	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(action == XDP_REDIRECT ? PODFWD_STAT_REDIRECTED : PODFWD_STAT_NO_SOCKET);
	return action;
}

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static __always_inline int routes_own(__be32 daddr)
{
	struct podfwd_route_key key = { .prefixlen = 32, .addr = daddr };
	__u32 *value = bpf_map_lookup_elem(&routes, &key);

	return value && (*value & PODFWD_ROUTE_OWNED);
}

SEC("xdp")
int podfwd_xdp(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct podfwd_config *cfg;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct udphdr *udp;
	__u32 zero = 0, role, flags;
	__u16 tot_len;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return pass(PODFWD_STAT_PASS_UNCONFIGURED); /* cannot happen for an ARRAY; kernel */
	role = cfg->role;
	flags = cfg->flags;
	if (role != PODFWD_ROLE_UPLINK && role != PODFWD_ROLE_POD)
		return pass(PODFWD_STAT_PASS_UNCONFIGURED); /* loaded but not configured: kernel */

	if ((void *)(eth + 1) > data_end)
		return pass(PODFWD_STAT_PASS_MALFORMED); /* runt frame: the kernel drops and counts it */
	if (eth->h_dest[0] & 1)
		return pass(PODFWD_STAT_PASS_L2_GROUP); /* broadcast/multicast (ARP requests, ...) */
	if ((flags & PODFWD_F_OWN_MAC_ONLY) && !mac_equal(eth->h_dest, cfg->mac))
		return pass(PODFWD_STAT_PASS_OTHER_HOST); /* not for us at L2: kernel drops it */
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		return pass(PODFWD_STAT_PASS_VLAN); /* podfwd handles untagged frames only */
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return pass(PODFWD_STAT_PASS_NON_IPV4); /* ARP, IPv6, LLDP, ...: kernel */

	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return pass(PODFWD_STAT_PASS_MALFORMED); /* truncated IPv4 header */
	if (iph->version != 4 || iph->ihl < 5)
		return pass(PODFWD_STAT_PASS_MALFORMED); /* not a valid IPv4 header */
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || (void *)iph + tot_len > data_end)
		return pass(PODFWD_STAT_PASS_MALFORMED); /* total length disagrees with the frame */
	if (iph->ihl != 5)
		return pass(PODFWD_STAT_PASS_IP_OPTIONS); /* options (router alert, RR, TS): kernel */

	if (iph->daddr == cfg->node_ip) {
		if (role == PODFWD_ROLE_UPLINK && (flags & PODFWD_F_VXLAN) &&
		    iph->protocol == IPPROTO_UDP) {
			if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
				return pass(PODFWD_STAT_PASS_FRAGMENT); /* podfwd does not reassemble */
			udp = (void *)(iph + 1);
			if ((void *)(udp + 1) > data_end)
				return pass(PODFWD_STAT_PASS_MALFORMED); /* truncated UDP header */
			if (udp->dest == cfg->vxlan_port)
				return owned(ctx, PODFWD_STAT_OWNED_VXLAN); /* VXLAN ends here; outer TTL moot */
		}
		return pass(PODFWD_STAT_PASS_LOCAL); /* for the node itself */
	}

	if (iph->ttl <= 1)
		return pass(PODFWD_STAT_PASS_TTL); /* the kernel answers ICMP time exceeded */

	if (role == PODFWD_ROLE_UPLINK) {
		if ((flags & PODFWD_F_LOCAL_PODS) && cfg->pod_mask &&
		    (iph->daddr & cfg->pod_mask) == cfg->pod_net)
			return owned(ctx, PODFWD_STAT_OWNED_LOCAL_PODS); /* host-gw inbound to our pods */
		if ((flags & PODFWD_F_UPLINK_ROUTES) && routes_own(iph->daddr))
			return owned(ctx, PODFWD_STAT_OWNED_ROUTE); /* transit to a peer subnet */
		return pass(PODFWD_STAT_PASS_NOT_OWNED); /* routed by the kernel */
	}

	if (routes_own(iph->daddr))
		return owned(ctx, PODFWD_STAT_OWNED_ROUTE); /* pod traffic to a peer subnet */
	return pass(PODFWD_STAT_PASS_NOT_OWNED); /* pod to node, local pod, or the outside */
}

char LICENSE[] SEC("license") = "Apache-2.0";
