// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * podfwd_xdp: hands podfwd's AF_XDP workers only the frames podfwd can forward to
 * completion, and every other frame to the kernel with XDP_PASS, so the kernel keeps
 * doing what it always did (ICMP errors, PMTU, fragmentation, IP options, ARP resolution
 * and its queue, the node's own traffic, kube-proxy's NAT).
 *
 * One instance per interface; the control thread sets the interface's role and the
 * node's addresses in `config`, the peer pod subnets in `routes`, the peers' node
 * addresses in `vteps`, the interfaces podfwd forwards to in `ports`, and registers one
 * AF_XDP socket per rx queue in `xsks`. When no socket is registered for a queue
 * (podfwd starting, stopping, or a worker gone), owned frames fall back to the kernel.
 *
 * "Forward to completion" is decided with the kernel's own tables: bpf_fib_lookup()
 * (route, egress device and its MTU, neighbour state, forwarding enabled) and, for TCP
 * and UDP, bpf_xdp_ct_lookup() (a connection the kernel NATs must stay on the kernel
 * path, or its replies would not be un-NATed). Their "yes" is remembered per flow and CPU
 * in `flow_cache` until the control thread bumps `epoch` on the next kernel change
 * (docs/xdp.md, "The flow cache"). Rules and maps: docs/xdp.md.
 *
 * The FIB lookup helper and the conntrack kfuncs are GPL-only, so this program (and only
 * it) is dual-licensed GPL-2.0/BSD-2-Clause; podfwd itself is Apache-2.0.
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
#define AF_INET 2
#define VXLAN_HLEN 8
#define VXLAN_FLAG_I 0x08

/* include/uapi/linux/netfilter/nf_conntrack_common.h: IPS_SRC_NAT | IPS_DST_NAT */
#define IPS_NAT_MASK 0x30
#define BPF_F_CURRENT_NETNS (-1)

/* The kernel's struct bpf_ct_opts (net/netfilter/nf_conntrack_bpf.c), first 12 bytes
 * (NF_BPF_CT_OPTS_OLD_SZ: accepted by every kernel that has the kfunc). */
struct bpf_ct_opts___podfwd {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u8 reserved[2];
};

/* Only `status` is read; its offset is relocated against the running kernel (CO-RE). */
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

/* Weak: a kernel without conntrack (or without the kfunc) loads the program anyway, and
 * there is then no NAT to respect. */
extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___podfwd *opts,
					 __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

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

/* Peers' node addresses (network order): VXLAN from them is decapsulated here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PODFWD_MAX_VTEPS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __be32);
	__type(value, __u32);
} vteps SEC(".maps");

/* ifindex -> enum podfwd_port_kind. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PODFWD_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

/* key_size/value_size instead of BTF types: XSKMAP does not take BTF key/value types,
 * and libbpf would warn and retry without them. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PODFWD_MAX_QUEUES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} xsks SEC(".maps");

/* A `flow_cache` slot is valid only for the epoch it was written in, made of two counts:
 * [PODFWD_EPOCH_CONTROL] the control thread's count of kernel changes (routes,
 * neighbours, links, rules, netconf, NATed connections; and a tick a second), written
 * by it alone (0: nothing is remembered); [PODFWD_EPOCH_CONNECTIONS] this program's
 * count of new connections it handed to the kernel (which may NAT them), incremented
 * atomically here alone. Two counters, so neither writer can undo the other's bump. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PODFWD_EPOCH__MAX);
	__type(key, __u32);
	__type(value, __u64);
} epoch SEC(".maps");

/* The kernel's recent answers per flow, per CPU (no sharing, no atomics), direct-mapped:
 * a colliding flow overwrites the slot and is asked about again next time. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PODFWD_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct podfwd_flow_slot);
} flow_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PODFWD_STAT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");


/* ---- The in-kernel fast path (PODFWD_F_FORWARD; docs/xdp-fastpath.md) ---------------- */

/* The FIB's LPM: prefix -> adjacency id (the pipeline's next-hop id). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PODFWD_MAX_FIB_ROUTES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct podfwd_route_key);
	__type(value, __u32);
} fib SEC(".maps");

/* Adjacency id -> what it means on the wire. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PODFWD_MAX_ADJACENCIES);
	__type(key, __u32);
	__type(value, struct podfwd_adjacency);
} adjacencies SEC(".maps");

/* FIB port id -> egress ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, PODFWD_MAX_TX_PORTS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} tx_ports SEC(".maps");

/* Drop reasons and fast-path counts (enum podfwd_drop, enum podfwd_fwd_stat). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PODFWD_FWD__MAX);
	__type(key, __u32);
	__type(value, __u64);
} fwd_stats SEC(".maps");

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
static __always_inline int to_socket(struct xdp_md *ctx)
{
	int action;

	/* The low bits of the flags are the action when the queue has no socket. */
	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	count(action == XDP_REDIRECT ? PODFWD_STAT_REDIRECTED : PODFWD_STAT_NO_SOCKET);
	return action;
}

static __always_inline int owned(struct xdp_md *ctx, __u32 why)
{
	count(why);
	return to_socket(ctx);
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

static __always_inline int is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
}

/*
 * Looks the flow of `iph` up in conntrack (either direction). `l4` points at the
 * TCP/UDP ports of the packet (a header without options). -1 when there is nothing to
 * look up (not TCP/UDP, no ports, no conntrack kfunc); else 0 and `*ct` is the entry
 * (to release) or NULL.
 */
static __always_inline int ct_lookup(struct xdp_md *ctx, const struct iphdr *iph,
				     const void *l4, const void *data_end, struct nf_conn **ct)
{
	struct bpf_ct_opts___podfwd opts = { .netns_id = BPF_F_CURRENT_NETNS };
	struct bpf_sock_tuple tuple = {};
	const __be16 *ports = l4;

	*ct = NULL;
	if (!bpf_xdp_ct_lookup)
		return -1;
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return -1;
	if ((const void *)(ports + 2) > data_end)
		return -1;
	tuple.ipv4.saddr = iph->saddr;
	tuple.ipv4.daddr = iph->daddr;
	tuple.ipv4.sport = ports[0];
	tuple.ipv4.dport = ports[1];
	opts.l4proto = iph->protocol;
	*ct = bpf_xdp_ct_lookup(ctx, &tuple, sizeof(tuple.ipv4), &opts, sizeof(opts));
	return 0;
}

/*
 * Whether the kernel NATs this flow: a conntrack entry (either direction) with SNAT or
 * DNAT. Its packets must take the kernel path, which rewrites them. Other protocols
 * than TCP and UDP are not looked up (bpf_xdp_ct_lookup takes those only).
 */
static __always_inline int kernel_nats(struct xdp_md *ctx, const struct iphdr *iph,
				       const void *l4, const void *data_end, __u32 flags)
{
	struct nf_conn *ct;
	int nat;

	if (!(flags & PODFWD_F_CONNTRACK))
		return 0;
	if (ct_lookup(ctx, iph, l4, data_end, &ct) < 0 || !ct)
		return 0; /* nothing to look up (the decision needs no ports), or no entry */
	nat = (ct->status & IPS_NAT_MASK) != 0;
	bpf_ct_release(ct);
	return nat;
}

/* What the kernel's answers about a frame depend on (see struct podfwd_flow_slot). */
struct flow {
	__be32 saddr;
	__be32 daddr;
	__u32 ports;
	__u32 ifindex;
	__u8 protocol;
	__u8 tos;
	__u16 tot_len;
};

/* `iph` has no options; `l4` is where its TCP/UDP ports would be. */
static __always_inline void flow_of(struct flow *f, const struct iphdr *iph, const void *l4,
				    const void *data_end, __u32 ifindex)
{
	f->saddr = iph->saddr;
	f->daddr = iph->daddr;
	f->ports = 0;
	if ((iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) &&
	    (const void *)((const __u32 *)l4 + 1) <= data_end)
		f->ports = *(const __u32 *)l4;
	f->ifindex = ifindex;
	f->protocol = iph->protocol;
	f->tos = iph->tos;
	f->tot_len = bpf_ntohs(iph->tot_len);
}

/* The current epoch when the flow cache is on, else 0. */
static __always_inline __u64 cache_epoch(__u32 flags)
{
	__u32 control = PODFWD_EPOCH_CONTROL, connections = PODFWD_EPOCH_CONNECTIONS;
	__u64 *c, *n;

	if (!(flags & PODFWD_F_FLOW_CACHE))
		return 0;
	c = bpf_map_lookup_elem(&epoch, &control);
	n = bpf_map_lookup_elem(&epoch, &connections);
	if (!c || !n || !*c)
		return 0;
	return (*c << 32) | (*n & 0xffffffffu);
}


static __always_inline struct podfwd_flow_slot *flow_slot(const struct flow *f)
{
	/* murmur3's finalizer over a mix of the key: cheap, and spreads ports and hosts. */
	__u32 h = f->saddr ^ (f->daddr * 0x9e3779b1u) ^ (f->ports * 0x85ebca6bu) ^
		  (f->ifindex << 8) ^ f->protocol ^ ((__u32)f->tos << 24);

	h ^= h >> 16;
	h *= 0x7feb352du;
	h ^= h >> 15;
	h *= 0x846ca68bu;
	h ^= h >> 16;
	h &= PODFWD_FLOW_CACHE_SLOTS - 1;
	return bpf_map_lookup_elem(&flow_cache, &h);
}

static __always_inline int same_flow(const struct podfwd_flow_slot *s, const struct flow *f)
{
	return s->saddr == f->saddr && s->daddr == f->daddr && s->ports == f->ports &&
	       s->ifindex == f->ifindex && s->protocol == f->protocol && s->tos == f->tos;
}

/* Whether the cache holds, for this epoch, that the kernel lets podfwd have `f`. */
static __always_inline int flow_cached(const struct flow *f, __u64 ep)
{
	struct podfwd_flow_slot *s;

	if (!ep)
		return 0;
	s = flow_slot(f);
	return s && s->epoch == ep && same_flow(s, f) && f->tot_len <= s->max_len;
}

/* Remembers that the kernel's answers for `f` let podfwd have it. */
static __always_inline void flow_remember(const struct flow *f, __u64 ep)
{
	struct podfwd_flow_slot *s;

	if (!ep)
		return;
	s = flow_slot(f);
	if (!s)
		return;
	if (s->epoch == ep && same_flow(s, f)) {
		if (f->tot_len > s->max_len)
			s->max_len = f->tot_len; /* the egress MTU took this size too */
		return;
	}
	s->saddr = f->saddr;
	s->daddr = f->daddr;
	s->ports = f->ports;
	s->ifindex = f->ifindex;
	s->protocol = f->protocol;
	s->tos = f->tos;
	s->max_len = f->tot_len;
	s->epoch = ep;
}

/*
 * A TCP/UDP frame goes to the kernel. If it starts a connection (conntrack has no entry
 * for it yet), the kernel may NAT that connection (a pod's packet to a Service address,
 * a peer's to a node port), and its replies may be a flow whose "not NATed" answer is
 * remembered: forget every remembered answer now, before the kernel even sees the
 * packet. (ctnetlink events tell the control thread of NAT entries made any other way,
 * a little later.)
 */
static __always_inline void note_kernel_flow(struct xdp_md *ctx, const struct iphdr *iph,
					     const void *l4, const void *data_end, __u32 flags)
{
	__u32 connections = PODFWD_EPOCH_CONNECTIONS;
	struct nf_conn *ct;
	__u64 *n;
	int known;

	if ((flags & (PODFWD_F_FLOW_CACHE | PODFWD_F_FLOW_CACHE_CT)) !=
	    (PODFWD_F_FLOW_CACHE | PODFWD_F_FLOW_CACHE_CT))
		return;
	known = ct_lookup(ctx, iph, l4, data_end, &ct);
	if (known < 0)
		return; /* not TCP/UDP, or no ports: nothing the kernel NATs by port */
	if (ct) {
		bpf_ct_release(ct);
		return;
	}
	n = bpf_map_lookup_elem(&epoch, &connections);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/*
 * Asks the kernel's FIB what it would do with `iph` arriving on `ifindex`. 0 if it
 * forwards it to an interface of kind `want` (a bit mask of 1 << enum podfwd_port_kind)
 * with the next hop resolved and the packet fitting the egress MTU, otherwise the stat
 * that says why the kernel must have it.
 */
static __always_inline __u32 kernel_forwards(struct xdp_md *ctx, const struct iphdr *iph,
					     __u32 ifindex, __u32 want, __u32 flags)
{
	struct bpf_fib_lookup fib = {};
	__u32 *kind;
	long rc;

	if (!(flags & PODFWD_F_KERNEL_FIB))
		return 0;
	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	fib.ifindex = ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		break;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return PODFWD_STAT_PASS_NO_NEIGH; /* the kernel queues it and resolves */
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return PODFWD_STAT_PASS_FRAG_NEEDED; /* ICMP frag needed, or fragments it */
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return PODFWD_STAT_PASS_FWD_DISABLED; /* net.ipv4.ip_forward = 0 */
	default:
		return PODFWD_STAT_PASS_KERNEL_ROUTE; /* local, unreachable, blackhole, ... */
	}
	kind = bpf_map_lookup_elem(&ports, &fib.ifindex);
	if (!kind || *kind > 31 || !((1u << *kind) & want))
		return PODFWD_STAT_PASS_KERNEL_ROUTE; /* a device podfwd does not forward to */
	return 0;
}

/*
 * Whether the kernel lets podfwd have this frame: it does not NAT the flow (conntrack)
 * and forwards it to a device of kind `want` (FIB), asked of the kernel or remembered
 * from an earlier answer of this epoch. 0 if so, otherwise the stat that says why the
 * kernel must have it.
 */
static __always_inline __u32 kernel_lets_go(struct xdp_md *ctx, const struct iphdr *iph,
					    const void *l4, const void *data_end, __u32 ifindex,
					    __u32 want, __u32 flags)
{
	struct flow f;
	__u64 ep = cache_epoch(flags);
	__u32 why;
	int hit;

	flow_of(&f, iph, l4, data_end, ifindex);
	hit = flow_cached(&f, ep);
	if (!(hit && (flags & PODFWD_F_FLOW_CACHE_CT)) &&
	    kernel_nats(ctx, iph, l4, data_end, flags))
		return PODFWD_STAT_PASS_NAT;
	if (hit) {
		count(PODFWD_STAT_FLOW_CACHE_HIT);
		return 0;
	}
	why = kernel_forwards(ctx, iph, ifindex, want, flags);
	if (!why)
		flow_remember(&f, ep);
	return why;
}

/* Offsets in a VXLAN frame whose outer IPv4 header has no options. */
#define OUTER_UDP (sizeof(struct ethhdr) + sizeof(struct iphdr))
#define OUTER_VXLAN (OUTER_UDP + sizeof(struct udphdr))
#define INNER_ETH (OUTER_VXLAN + VXLAN_HLEN)
#define INNER_IP (INNER_ETH + sizeof(struct ethhdr))
#define INNER_L4 (INNER_IP + sizeof(struct iphdr))


/* ---- The in-kernel fast path: the pipeline (src/pipeline/mod.rs), byte for byte ------- */

static __always_inline void fwd_add(__u32 stat, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&fwd_stats, &stat);

	if (c)
		*c += n; /* this CPU's slot */
}

/* Dropped as the pipeline drops it, with its reason. */
static __always_inline int fwd_drop(__u32 reason)
{
	fwd_add(reason, 1);
	fwd_add(PODFWD_FWD_DROPPED, 1);
	return XDP_DROP;
}

/* Not finished here (the pipeline hands these to the kernel too: no route, next hop
 * unresolved, too big, TTL, local): the queue's AF_XDP socket, else the kernel. The frame
 * is unchanged. */
static __always_inline int fwd_fallback(struct xdp_md *ctx)
{
	fwd_add(PODFWD_FWD_FALLBACK, 1);
	return to_socket(ctx); /* the owned_* reason is counted already */
}

/* RFC 1071 fold, as checksum::fold. */
static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* A 64-bit ones'-complement sum folded to 32 bits (still to fold with csum_fold). */
static __always_inline __u32 csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__u32)sum;
}

/* Whether the 20-byte IPv4 header at `ip` checksums (checksum::verify_header20). */
static __always_inline int csum_ok20(const void *ip)
{
	const __u16 *w = ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i]; /* the ones'-complement sum is byte-order independent */
	return csum_fold(sum) == 0xffff;
}

/* Scratch for the tail of a checksummed payload (csum_bytes): per CPU, never shared. */
#define CSUM_CHUNK 512 /* the most bpf_csum_diff sums in one call */
struct csum_scratch {
	__u8 b[CSUM_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct csum_scratch);
} csum_scratch SEC(".maps");

/* Frames are at most a page (no multi-buffer XDP): the longest payload summed. */
#define CSUM_MAX_LEN 4096

/*
 * The ones'-complement sum (unfolded, in memory order like csum_ok20) of the `len` bytes
 * at offset `off` of the frame (`off` a constant of the caller), or -1 if they are not
 * all within it. bpf_csum_diff sums at most 512 bytes a call: whole chunks straight from
 * the packet (a constant size the verifier can bound), the rest below 512 copied to a
 * per-CPU scratch buffer in one call (a variable size the verifier bounds by the
 * buffer), and the last 0..3 bytes by hand (a trailing odd byte as if padded with zero,
 * RFC 1071).
 */
static __always_inline __s64 csum_bytes(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct csum_scratch *scratch;
	__u32 zero = 0, tail, rest;
	__u64 sum = 0;
	__s64 s;
	__u8 *p;

	if (len > CSUM_MAX_LEN || off > 256)
		return -1;
	for (int i = 0; i < CSUM_MAX_LEN / CSUM_CHUNK; i++) {
		if (len < CSUM_CHUNK)
			break;
		p = data + off;
		if ((void *)(p + CSUM_CHUNK) > data_end)
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)p, CSUM_CHUNK, (__wsum)sum);
		if (s < 0)
			return -1;
		sum = (__u64)s;
		off += CSUM_CHUNK;
		len -= CSUM_CHUNK;
	}
	tail = len & (CSUM_CHUNK - 4); /* whole 32-bit words below 512 bytes */
	rest = len & 3;
	if (tail >= 4) {
		scratch = bpf_map_lookup_elem(&csum_scratch, &zero);
		if (!scratch)
			return -1;
		if (bpf_xdp_load_bytes(ctx, off, scratch->b, tail))
			return -1;
		s = bpf_csum_diff(NULL, 0, (__be32 *)scratch->b, tail, (__wsum)sum);
		if (s < 0)
			return -1;
		sum = (__u64)s;
		off += tail;
	}
	if (rest) {
		if (off > 256 + CSUM_MAX_LEN)
			return -1;
		p = data + off;
		if ((void *)(p + 1) > data_end)
			return -1;
		if (rest >= 2) {
			if ((void *)(p + 2) > data_end)
				return -1;
			sum += *(__u16 *)p;
			p += 2;
		}
		if (rest & 1) {
			if ((void *)(p + 1) > data_end)
				return -1;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			sum += *p;
#else
			sum += (__u32)*p << 8;
#endif
		}
	}
	return (__s64)sum;
}

/*
 * Completes the TCP/UDP checksum of the IPv4 packet (no options, not a fragment, whole
 * in the frame: the caller checked) at offset `ip_off` of the frame if it is partial: a
 * veth sender with tx checksum offload (the default for pods) leaves only the folded
 * pseudo-header sum in the field (CHECKSUM_PARTIAL), for the kernel to complete if the
 * packet leaves through a device without offload. A redirected frame loses that state,
 * so the program completes the checksum as that device would: the field already holds
 * the pseudo-header's sum, so the complement of the sum over the whole segment is the
 * checksum. Same test and arithmetic as the AF_XDP worker's src/partial_csum.rs: a
 * complete checksum equals that value once in 65536 packets, and recomputing it then
 * writes the same value. Returns 0 (complete, or completed) or -1 (could not: the
 * caller hands the frame to the kernel, which keeps the state).
 */
static __always_inline int l4_csum_complete(struct xdp_md *ctx, __u32 ip_off)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	const struct iphdr *iph = data + ip_off;
	__u32 off, sum, l4_off = ip_off + sizeof(*iph);
	__u16 *field, l4_len, csum;
	__s64 total;
	__u8 proto;

	if ((void *)(iph + 1) > data_end)
		return -1;
	proto = iph->protocol;
	if (proto == IPPROTO_TCP)
		off = 16;
	else if (proto == IPPROTO_UDP)
		off = 6;
	else
		return 0;
	l4_len = bpf_ntohs(iph->tot_len) - sizeof(*iph);
	if (l4_len < off + 2)
		return 0; /* too short to hold the field: nothing to complete */
	field = data + l4_off + off;
	if ((void *)(field + 1) > data_end)
		return 0;
	/* In memory order, as csum_ok20: protocol and length as network-order words. */
	sum = (iph->saddr & 0xffff) + (iph->saddr >> 16) + (iph->daddr & 0xffff) +
	      (iph->daddr >> 16) + bpf_htons((__u16)proto) + bpf_htons(l4_len);
	if (*field != csum_fold(sum))
		return 0; /* complete (a UDP 0, "no checksum", is never a folded sum) */
	total = csum_bytes(ctx, l4_off, l4_len);
	if (total < 0)
		return -1;
	csum = ~csum_fold(csum_fold64((__u64)total));
	if (proto == IPPROTO_UDP && csum == 0)
		csum = 0xffff; /* RFC 768: a computed zero is sent as all ones */
	data_end = (void *)(long)ctx->data_end;
	data = (void *)(long)ctx->data;
	field = data + l4_off + off;
	if ((void *)(field + 1) > data_end)
		return -1;
	*field = csum;
	fwd_add(PODFWD_FWD_CSUM_COMPLETED, 1);
	return 0;
}

/* The pipeline's flow_src_port over the IPv4 header `iph` (no options) of a packet of
 * `ip_len` bytes: a multiply-xorshift hash of the flow scaled into 32768..61000. */
static __always_inline __u16 flow_src_port(const struct iphdr *iph, __u16 ip_len,
					   const void *data_end)
{
	const __u8 *l4 = (const void *)(iph + 1);
	__u32 ports = 0;
	__u64 h;

	if ((iph->protocol == IPPROTO_TCP || iph->protocol == IPPROTO_UDP) && !is_fragment(iph) &&
	    ip_len >= sizeof(*iph) + 4 && (const void *)(l4 + 4) <= data_end)
		ports = ((__u32)l4[0] << 24) | ((__u32)l4[1] << 16) | ((__u32)l4[2] << 8) | l4[3];
	h = ((__u64)bpf_ntohl(iph->saddr) << 32 | bpf_ntohl(iph->daddr)) ^ ((__u64)ports << 17) ^
	    ((__u64)iph->protocol << 56);
	h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
	h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
	h = (__u32)(h ^ (h >> 33));
	return 32768 + (__u16)((h * (61000 - 32768)) >> 32);
}

/* TTL-1 with the pipeline's incremental checksum update (ipv4::Packet::decrement_ttl). */
static __always_inline void decrement_ttl(struct iphdr *iph)
{
	__u32 check = bpf_ntohs(iph->check) + 0x0100;

	check += check >= 0xffff;
	iph->ttl--;
	iph->check = bpf_htons((__u16)check);
}

/* What the pipeline's `forward` decides for an IPv4 packet (no options) to `daddr` of
 * `ip_len` bytes with `ttl`: the adjacency to apply, or NULL and *verdict (XDP_DROP with
 * the reason counted, or -1: fall back). */
static __always_inline struct podfwd_adjacency *fwd_decide(__be32 daddr, __u16 ip_len, __u8 ttl,
							   int *verdict)
{
	struct podfwd_route_key key = { .prefixlen = 32, .addr = daddr };
	struct podfwd_adjacency *adj;
	__u32 *id;

	*verdict = -1;
	id = bpf_map_lookup_elem(&fib, &key);
	if (!id)
		return NULL; /* no_route: the kernel may have one */
	adj = bpf_map_lookup_elem(&adjacencies, id);
	if (!adj)
		return NULL; /* an id beyond the table: no_route, as the pipeline */
	switch (adj->kind) {
	case PODFWD_ADJ_REWRITE:
		if (ip_len > adj->mtu || ttl <= 1)
			return NULL; /* mtu (ICMP frag needed) or time exceeded: the kernel */
		break;
	case PODFWD_ADJ_ENCAP:
		if ((__u32)ip_len + 50 > adj->mtu || ttl <= 1)
			return NULL;
		break;
	case PODFWD_ADJ_BLACKHOLE:
		*verdict = fwd_drop(PODFWD_DROP_BLACKHOLE);
		return NULL;
	default:
		return NULL; /* none, unresolved, local: the kernel */
	}
	if (!bpf_map_lookup_elem(&tx_ports, &adj->port))
		return NULL; /* the egress port has no devmap entry (yet): the kernel */
	return adj;
}

/* Cuts Ethernet padding: the egress frame carries exactly the IPv4 packet. */
static __always_inline int trim_to(struct xdp_md *ctx, __u32 frame_len)
{
	long have = (long)ctx->data_end - (long)ctx->data;

	if (have > frame_len)
		return bpf_xdp_adjust_tail(ctx, (int)(frame_len - have));
	return 0;
}

/* Applies `adj` (decided by fwd_decide) to the Ethernet frame at ctx->data carrying an
 * IPv4 packet (no options) of `ip_len` bytes, and redirects it. */
static __always_inline int fwd_apply(struct xdp_md *ctx, struct podfwd_adjacency *adj,
				     __u16 ip_len)
{
	__u32 frame_len = sizeof(struct ethhdr) + ip_len;
	void *data, *data_end;
	struct iphdr *iph;
	__u8 *outer;
	__u16 sport, udp_len, out_len;
	__u8 ecn;

	if (trim_to(ctx, frame_len))
		return fwd_drop(PODFWD_DROP_MALFORMED); /* cannot happen: ip_len fits the frame */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end)
		return fwd_drop(PODFWD_DROP_MALFORMED);
	if (adj->kind == PODFWD_ADJ_REWRITE) {
		decrement_ttl(iph);
		__builtin_memcpy(data, adj->macs, 12);
		fwd_add(PODFWD_FWD_FORWARDED, 1);
		fwd_add(PODFWD_FWD_FORWARDED_BYTES, frame_len);
		return bpf_redirect_map(&tx_ports, adj->port, 0);
	}
	/* VXLAN encap: read what the outer headers need, then grow the head. */
	sport = flow_src_port(iph, ip_len, data_end);
	ecn = iph->tos & 3;
	if (ecn == 3)
		ecn = 2; /* RFC 6040 normal mode, as INET_ECN_encapsulate: CE becomes ECT(0) */
	if (bpf_xdp_adjust_head(ctx, -50))
		return fwd_drop(PODFWD_DROP_NO_HEADROOM);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	outer = data;
	iph = data + 50 + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > data_end)
		return fwd_drop(PODFWD_DROP_NO_HEADROOM);
	decrement_ttl(iph);
	__builtin_memcpy(data + 50, adj->macs, 12);
	__builtin_memcpy(outer, adj->outer, 50);
	udp_len = 8 + 8 + frame_len;
	out_len = 20 + udp_len;
	outer[15] = ecn;
	*(__be16 *)(outer + 16) = bpf_htons(out_len);
	*(__be16 *)(outer + 24) = bpf_htons((__u16)~csum_fold(adj->ip_sum + out_len + ecn));
	*(__be16 *)(outer + 34) = bpf_htons(sport);
	*(__be16 *)(outer + 38) = bpf_htons(udp_len);
	fwd_add(PODFWD_FWD_ENCAPSULATED, 1);
	fwd_add(PODFWD_FWD_ENCAPSULATED_BYTES, 50 + frame_len);
	return bpf_redirect_map(&tx_ports, adj->port, 0);
}

/* An owned frame that is not VXLAN to the node: an IPv4 packet without options, not a
 * fragment, TTL > 1, its total length within the frame (the classifier checked). */
static __always_inline int fwd_ip(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct podfwd_adjacency *adj;
	int verdict;
	__u16 ip_len;

	if ((void *)(iph + 1) > data_end)
		return fwd_drop(PODFWD_DROP_MALFORMED);
	if (!csum_ok20(iph))
		return fwd_drop(PODFWD_DROP_BAD_CHECKSUM);
	ip_len = bpf_ntohs(iph->tot_len);
	adj = fwd_decide(iph->daddr, ip_len, iph->ttl, &verdict);
	if (!adj)
		return verdict >= 0 ? verdict : fwd_fallback(ctx);
	if (l4_csum_complete(ctx, sizeof(struct ethhdr)))
		return fwd_fallback(ctx); /* the kernel completes it on the way out */
	return fwd_apply(ctx, adj, ip_len);
}

/* Whether the IPv4 header of `hlen` bytes (20..60) at offset `off` of the frame
 * checksums. Copied to the stack first: a loop over packet bytes of variable length is
 * more than the verifier follows. */
static __always_inline int csum_ok_at(struct xdp_md *ctx, __u32 off, __u32 hlen)
{
	__u16 w[30];
	__u32 sum = 0;

	if (hlen < 20 || hlen > 60)
		return 0;
	if (bpf_xdp_load_bytes(ctx, off, w, hlen))
		return 0;
	for (__u32 i = 0; i < 30; i++) {
		if (i * 2 >= hlen)
			break;
		sum += w[i];
	}
	return csum_fold(sum) == 0xffff;
}

/* VXLAN to the node's port that the classifier owns: validated in the pipeline's order
 * (parse_slow), each drop with its reason, then decapsulated and forwarded. The classifier
 * checked the outer Ethernet and IPv4 headers (no options, not a fragment, total length
 * within the frame), the UDP header within the frame and its port. */
static __always_inline int fwd_vxlan(struct xdp_md *ctx, const struct podfwd_config *cfg)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct udphdr *udp = data + OUTER_UDP;
	const __u8 *vx = data + OUTER_VXLAN;
	const struct ethhdr *ieth = data + INNER_ETH;
	const struct iphdr *inner = data + INNER_IP;
	struct podfwd_adjacency *adj;
	__u32 udp_len, inner_len, hlen, total, vni;
	int verdict;

	if ((void *)(udp + 1) > data_end)
		return fwd_drop(PODFWD_DROP_BAD_VXLAN);
	if (!csum_ok20(iph))
		return fwd_drop(PODFWD_DROP_BAD_CHECKSUM);
	/* udp::Packet::new_checked over the IPv4 payload. */
	udp_len = bpf_ntohs(udp->len);
	if ((__u32)bpf_ntohs(iph->tot_len) < sizeof(*iph) + sizeof(*udp) || udp_len < 8 ||
	    udp_len > (__u32)bpf_ntohs(iph->tot_len) - sizeof(*iph))
		return fwd_drop(PODFWD_DROP_BAD_VXLAN);
	/* vxlan::Packet::new_checked over the UDP payload. */
	if (udp_len < 8 + VXLAN_HLEN || (void *)(vx + VXLAN_HLEN) > data_end)
		return fwd_drop(PODFWD_DROP_BAD_VXLAN);
	if (!(vx[0] & VXLAN_FLAG_I))
		return fwd_drop(PODFWD_DROP_BAD_VXLAN);
	vni = ((__u32)vx[4] << 16) | ((__u32)vx[5] << 8) | vx[6];
	if (vni != cfg->vni)
		return fwd_drop(PODFWD_DROP_BAD_VNI);
	if (!bpf_map_lookup_elem(&vteps, &iph->saddr))
		return fwd_drop(PODFWD_DROP_UNKNOWN_VTEP);
	/* check_ipv4_frame over the inner frame, which ends where the UDP datagram ends. */
	inner_len = udp_len - 8 - VXLAN_HLEN;
	if (inner_len < sizeof(struct ethhdr) || (void *)(ieth + 1) > data_end)
		return fwd_drop(PODFWD_DROP_MALFORMED);
	if (ieth->h_proto != bpf_htons(ETH_P_IP))
		return fwd_drop(PODFWD_DROP_NOT_IPV4);
	if (inner_len < sizeof(struct ethhdr) + sizeof(*inner) || (void *)(inner + 1) > data_end)
		return fwd_drop(PODFWD_DROP_MALFORMED);
	hlen = inner->ihl * 4;
	total = bpf_ntohs(inner->tot_len);
	if (inner->version != 4 || hlen < sizeof(*inner) || total < hlen ||
	    inner_len - sizeof(struct ethhdr) < total)
		return fwd_drop(PODFWD_DROP_MALFORMED);
	if (!csum_ok_at(ctx, INNER_IP, hlen))
		return fwd_drop(PODFWD_DROP_BAD_CHECKSUM);
	if (!mac_equal(ieth->h_dest, cfg->vtep_mac))
		return fwd_drop(PODFWD_DROP_WRONG_INNER_MAC);
	if (hlen != sizeof(*inner) || is_fragment(inner))
		return fwd_fallback(ctx); /* the classifier passes these first */
	adj = fwd_decide(inner->daddr, (__u16)total, inner->ttl, &verdict);
	if (!adj)
		return verdict >= 0 ? verdict : fwd_fallback(ctx);
	if (l4_csum_complete(ctx, INNER_IP))
		return fwd_fallback(ctx); /* the kernel VTEP decapsulates it, keeping the state */
	if (bpf_xdp_adjust_head(ctx, INNER_ETH))
		return fwd_drop(PODFWD_DROP_MALFORMED); /* cannot happen: the frame is longer */
	fwd_add(PODFWD_FWD_DECAPSULATED, 1);
	fwd_add(PODFWD_FWD_DECAPSULATED_BYTES, sizeof(struct ethhdr) + total);
	return fwd_apply(ctx, adj, (__u16)total);
}

/* An owned frame: forwarded here under PODFWD_F_FORWARD, else (and for what the fast path
 * cannot finish) to the queue's AF_XDP socket or the kernel. */
static __always_inline int take(struct xdp_md *ctx, const struct podfwd_config *cfg, __u32 why)
{
	if (!(cfg->flags & PODFWD_F_FORWARD))
		return owned(ctx, why);
	count(why);
	if (why == PODFWD_STAT_OWNED_VXLAN)
		return fwd_vxlan(ctx, cfg);
	return fwd_ip(ctx);
}

/*
 * VXLAN to this node's port (outer header already checked, no options, not a
 * fragment). Frames the pipeline drops (bad VXLAN header or VNI, unknown VTEP, inner
 * frame not for our VTEP or malformed) are owned, so each drop keeps its reason, as
 * before; a valid frame is owned only if its inner packet is one podfwd forwards to
 * completion, else the kernel's VXLAN device decapsulates it.
 */
static __always_inline int classify_vxlan(struct xdp_md *ctx, const struct podfwd_config *cfg,
					  const struct iphdr *iph, __u32 flags)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	const __u8 *vx = data + OUTER_VXLAN;
	const struct ethhdr *ieth = data + INNER_ETH;
	const struct iphdr *inner = data + INNER_IP;
	__u32 vni, why, ifindex;

	if ((void *)(inner + 1) > data_end)
		return take(ctx, cfg, PODFWD_STAT_OWNED_VXLAN); /* too short: dropped as malformed */
	vni = ((__u32)vx[4] << 16) | ((__u32)vx[5] << 8) | vx[6];
	if (!(vx[0] & VXLAN_FLAG_I) || vni != cfg->vni || !bpf_map_lookup_elem(&vteps, &iph->saddr))
		return take(ctx, cfg, PODFWD_STAT_OWNED_VXLAN); /* bad_vxlan, bad_vni, unknown_vtep */
	if (!mac_equal(ieth->h_dest, cfg->vtep_mac))
		return take(ctx, cfg, PODFWD_STAT_OWNED_VXLAN); /* wrong_inner_mac (kernel drops too) */
	if (ieth->h_proto != bpf_htons(ETH_P_IP))
		return pass(PODFWD_STAT_PASS_NON_IPV4); /* the kernel VTEP decapsulates it */
	if (inner->version != 4 || inner->ihl < 5)
		return take(ctx, cfg, PODFWD_STAT_OWNED_VXLAN); /* dropped as malformed */
	if (inner->ihl != 5)
		return pass(PODFWD_STAT_PASS_IP_OPTIONS);
	if (is_fragment(inner))
		return pass(PODFWD_STAT_PASS_FRAGMENT);
	if (inner->ttl <= 1)
		return pass(PODFWD_STAT_PASS_TTL); /* the kernel answers time exceeded */
	if (inner->daddr == cfg->node_ip) {
		note_kernel_flow(ctx, inner, data + INNER_L4, data_end, flags);
		return pass(PODFWD_STAT_PASS_LOCAL); /* a peer pod to a node port, ... */
	}
	/* Decapsulated packets enter the kernel's routing on its VXLAN device. A NATed
	 * flow is a Service reply: the kernel un-NATs it. */
	ifindex = cfg->vtep_ifindex ? cfg->vtep_ifindex : ctx->ingress_ifindex;
	why = kernel_lets_go(ctx, inner, data + INNER_L4, data_end, ifindex,
			     1u << PODFWD_PORT_POD, flags);
	if (why)
		return pass(why);
	return take(ctx, cfg, PODFWD_STAT_OWNED_VXLAN);
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
	__u32 zero = 0, role, flags, why;
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
	if (is_fragment(iph))
		return pass(PODFWD_STAT_PASS_FRAGMENT); /* reassembly, or fragments of NATed flows */

	if (iph->daddr == cfg->node_ip) {
		if (role == PODFWD_ROLE_UPLINK && (flags & PODFWD_F_VXLAN) &&
		    iph->protocol == IPPROTO_UDP) {
			udp = (void *)(iph + 1);
			if ((void *)(udp + 1) > data_end)
				return pass(PODFWD_STAT_PASS_MALFORMED); /* truncated UDP header */
			if (udp->dest == cfg->vxlan_port)
				return classify_vxlan(ctx, cfg, iph, flags); /* outer TTL moot */
		}
		note_kernel_flow(ctx, iph, iph + 1, data_end, flags);
		return pass(PODFWD_STAT_PASS_LOCAL); /* for the node itself */
	}

	if (iph->ttl <= 1)
		return pass(PODFWD_STAT_PASS_TTL); /* the kernel answers ICMP time exceeded */

	if (role == PODFWD_ROLE_UPLINK) {
		if ((flags & PODFWD_F_LOCAL_PODS) && cfg->pod_mask &&
		    (iph->daddr & cfg->pod_mask) == cfg->pod_net)
			why = PODFWD_STAT_OWNED_LOCAL_PODS; /* host-gw inbound to our pods */
		else if ((flags & PODFWD_F_UPLINK_ROUTES) && routes_own(iph->daddr))
			why = PODFWD_STAT_OWNED_ROUTE; /* transit to a peer subnet */
		else {
			note_kernel_flow(ctx, iph, iph + 1, data_end, flags);
			return pass(PODFWD_STAT_PASS_NOT_OWNED); /* routed by the kernel */
		}
	} else if (routes_own(iph->daddr)) {
		why = PODFWD_STAT_OWNED_ROUTE; /* pod traffic to a peer subnet */
	} else {
		/* A Service address among them: kube-proxy DNATs it here. */
		note_kernel_flow(ctx, iph, iph + 1, data_end, flags);
		return pass(PODFWD_STAT_PASS_NOT_OWNED); /* pod to node, local pod, or the outside */
	}

	{
		/* Pod side: out to a peer (uplink for host-gw, the VTEP for VXLAN);
		 * uplink: in to a local pod, or transit out again. A NATed flow: the kernel
		 * rewrites it. */
		__u32 want = role == PODFWD_ROLE_POD || why == PODFWD_STAT_OWNED_ROUTE
				     ? (1u << PODFWD_PORT_UPLINK) | (1u << PODFWD_PORT_VTEP)
				     : 1u << PODFWD_PORT_POD;
		__u32 kernel = kernel_lets_go(ctx, iph, iph + 1, data_end, ctx->ingress_ifindex,
					      want, flags);

		if (kernel)
			return pass(kernel);
	}
	return take(ctx, cfg, why);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
