/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layout of podfwd_xdp's maps, shared by the BPF program and mirrored by src/xdp.rs.
 * Keep both in step: Classifier::load checks every key and value size against the
 * loaded object and the stats count against the `stats` map's max_entries.
 */
#ifndef PODFWD_XDP_H
#define PODFWD_XDP_H

#include <linux/types.h>

/* XSKMAP entries: one AF_XDP socket per rx queue. */
#define PODFWD_MAX_QUEUES 64
/* LPM trie entries (peer pod subnets); BPF_F_NO_PREALLOC, so unused entries cost nothing. */
#define PODFWD_MAX_ROUTES 16384
/* Known VTEPs (peer node addresses) and interfaces podfwd forwards to. */
#define PODFWD_MAX_VTEPS 16384
#define PODFWD_MAX_PORTS 256

/* podfwd_config.role: which ownership rules apply on this interface. */
enum podfwd_role {
	PODFWD_ROLE_NONE = 0, /* not configured yet: everything goes to the kernel */
	PODFWD_ROLE_UPLINK = 1,
	PODFWD_ROLE_POD = 2,
};

/* podfwd_config.flags */
#define PODFWD_F_VXLAN (1u << 0)	/* uplink: own UDP to node_ip:vxlan_port */
#define PODFWD_F_LOCAL_PODS (1u << 1)	/* uplink: own IPv4 to the local pod CIDR (host-gw) */
#define PODFWD_F_UPLINK_ROUTES (1u << 2) /* uplink: own IPv4 to the `routes` (transit) */
#define PODFWD_F_OWN_MAC_ONLY (1u << 3) /* pass unicast frames not sent to `mac` */
#define PODFWD_F_KERNEL_FIB (1u << 4)	/* own only what the kernel's FIB forwards to a port */
#define PODFWD_F_CONNTRACK (1u << 5)	/* pass flows the kernel NATs (conntrack lookup) */
/* Remember the kernel's answers per flow in `flow_cache`, valid while `epoch` stays: set
 * only by a control thread that bumps `epoch` on every route, neighbour, link, rule and
 * netconf change (and every second). FIB answers only, unless ... */
#define PODFWD_F_FLOW_CACHE (1u << 6)
/* ... the control thread also bumps `epoch` on every NATed conntrack entry the kernel
 * creates (ctnetlink NEW events): then conntrack's "not NATed" is remembered too. */
#define PODFWD_F_FLOW_CACHE_CT (1u << 7)
/* The in-kernel fast path (backend "xdp"): an owned frame is forwarded by this program
 * itself (rewrite, encap, decap, then bpf_redirect_map through `tx_ports`) when `fib` and
 * `adjacencies` hold a resolved adjacency; what it cannot finish goes to the AF_XDP
 * socket of its queue, else to the kernel, exactly as an owned frame without this flag. */
#define PODFWD_F_FORWARD (1u << 8)

/* The single entry of the `config` ARRAY. Addresses and the port in network order. */
struct podfwd_config {
	__u32 role;
	__u32 flags;
	__be32 node_ip;
	__be32 pod_net;	 /* local pod CIDR, network address */
	__be32 pod_mask; /* its netmask; 0 disables the local-pods rule */
	__be16 vxlan_port;
	__u8 mac[6];	 /* this interface's MAC */
	__u32 vni;	 /* VXLAN network identifier, host order */
	__u32 vtep_ifindex; /* the kernel's VXLAN device (decapsulated lookups enter there) */
	__u8 vtep_mac[6];   /* own VTEP MAC: inner destination of VXLAN to this node */
	__u16 reserved;
	__u32 reserved2;
};

/* Key of the `routes` LPM trie: prefix length, then the address in network order. */
struct podfwd_route_key {
	__u32 prefixlen;
	__be32 addr;
};

/* Value of the `routes` LPM trie. 0 carves an exception out of a covering prefix. */
#define PODFWD_ROUTE_OWNED 1u

/* Values of the `ports` hash (key: ifindex): what a kernel FIB result's egress device is
 * to podfwd. A result whose device is not in the map is the kernel's to forward. */
enum podfwd_port_kind {
	PODFWD_PORT_UPLINK = 1,
	PODFWD_PORT_POD = 2,
	PODFWD_PORT_VTEP = 3, /* the kernel VXLAN device: podfwd encapsulates itself */
};

/* Entries of the `epoch` ARRAY (see there). */
enum podfwd_epoch {
	PODFWD_EPOCH_CONTROL = 0,
	PODFWD_EPOCH_CONNECTIONS = 1,
	PODFWD_EPOCH__MAX,
};

/* Slots of the `flow_cache` PERCPU_ARRAY (direct-mapped by a hash of the flow; a power
 * of two). */
#define PODFWD_FLOW_CACHE_SLOTS 4096

/* One remembered answer: the kernel forwards frames of this flow, arriving for a FIB
 * lookup on `ifindex`, up to `max_len` bytes of IPv4 total length, to a device of the
 * kind the classifier wanted (and, with PODFWD_F_FLOW_CACHE_CT, does not NAT them), as
 * of `epoch`. A slot whose epoch is not the current one is empty. */
struct podfwd_flow_slot {
	__be32 saddr;
	__be32 daddr;
	__u32 ports;	/* source and destination port as on the wire; 0 for other protocols */
	__u32 ifindex;
	__u8 protocol;
	__u8 tos;
	__u16 max_len;
	__u32 reserved;
	__u64 epoch;
};

/* Indices of the `stats` PERCPU_ARRAY. Append only; src/xdp.rs names them in this order. */
enum podfwd_stat {
	PODFWD_STAT_REDIRECTED = 0,	/* owned, handed to the queue's AF_XDP socket */
	PODFWD_STAT_NO_SOCKET,		/* owned, but no socket on this queue: kernel */
	PODFWD_STAT_OWNED_ROUTE,	/* owned: destination in `routes` */
	PODFWD_STAT_OWNED_LOCAL_PODS,	/* owned: uplink, destination in the local pod CIDR */
	PODFWD_STAT_OWNED_VXLAN,	/* owned: uplink, UDP to node_ip:vxlan_port */
	PODFWD_STAT_PASS_UNCONFIGURED,	/* passed: role not set yet */
	PODFWD_STAT_PASS_MALFORMED,	/* passed: truncated or invalid Ethernet/IPv4 */
	PODFWD_STAT_PASS_L2_GROUP,	/* passed: broadcast or multicast destination MAC */
	PODFWD_STAT_PASS_OTHER_HOST,	/* passed: unicast to another MAC */
	PODFWD_STAT_PASS_VLAN,		/* passed: 802.1Q / 802.1ad tagged */
	PODFWD_STAT_PASS_NON_IPV4,	/* passed: ARP, IPv6, anything not IPv4 */
	PODFWD_STAT_PASS_IP_OPTIONS,	/* passed: IPv4 header with options */
	PODFWD_STAT_PASS_FRAGMENT,	/* passed: a fragment */
	PODFWD_STAT_PASS_TTL,		/* passed: TTL <= 1 (kernel sends time exceeded) */
	PODFWD_STAT_PASS_LOCAL,		/* passed: to the node's own address */
	PODFWD_STAT_PASS_NOT_OWNED,	/* passed: IPv4 that matches no rule */
	PODFWD_STAT_PASS_NO_NEIGH,	/* passed: next hop not resolved (kernel queues, ARPs) */
	PODFWD_STAT_PASS_FRAG_NEEDED,	/* passed: too big for the egress MTU (ICMP, fragments) */
	PODFWD_STAT_PASS_FWD_DISABLED,	/* passed: IP forwarding off on the ingress device */
	PODFWD_STAT_PASS_KERNEL_ROUTE,	/* passed: the kernel routes it elsewhere (local, ...) */
	PODFWD_STAT_PASS_NAT,		/* passed: a flow the kernel NATs (conntrack) */
	PODFWD_STAT_FLOW_CACHE_HIT,	/* owned without asking the kernel: `flow_cache` knew */
	PODFWD_STAT__MAX,
};

/* ---- The in-kernel fast path (PODFWD_F_FORWARD): one set of maps per podfwd instance,
 * shared by the programs of all its interfaces (bpf_map__reuse_fd), filled from the FIB. */

/* Entries of `fib` (LPM: prefix -> adjacency id) and `adjacencies` (ARRAY by id). */
#define PODFWD_MAX_FIB_ROUTES 65536
#define PODFWD_MAX_ADJACENCIES 16384
/* Entries of `tx_ports` (DEVMAP: FIB port id -> ifindex). */
#define PODFWD_MAX_TX_PORTS 256

/* podfwd_adjacency.kind: the pipeline's `Adjacency` variants. 0 (an id without an entry)
 * means no route, as an id beyond the pipeline's table does. */
enum podfwd_adj_kind {
	PODFWD_ADJ_NONE = 0,
	PODFWD_ADJ_REWRITE = 1,	   /* MAC rewrite, TTL-1, out of `port` within `mtu` */
	PODFWD_ADJ_ENCAP = 2,	   /* VXLAN: inner MACs, outer headers from `outer` */
	PODFWD_ADJ_UNRESOLVED = 3, /* next hop's MAC unknown: the kernel resolves it */
	PODFWD_ADJ_LOCAL = 4,	   /* to the node's own stack */
	PODFWD_ADJ_BLACKHOLE = 5,  /* dropped: `blackhole` */
};

/* Value of `adjacencies`, 80 bytes: the pipeline's Adjacency / EncapTemplate. */
struct podfwd_adjacency {
	__u32 kind;	 /* enum podfwd_adj_kind */
	__u32 port;	 /* FIB port id: the key of `tx_ports` */
	__u32 ip_sum;	 /* encap: unfolded ones'-complement sum of `outer`'s IPv4 header */
	__u16 mtu;	 /* egress MTU: the (outer) IPv4 packet must fit */
	__u8 macs[12];	 /* rewrite: dst ++ src; encap: inner dst (peer VTEP) ++ src (ours) */
	__u8 outer[50];	 /* encap: outer Ethernet/IPv4/UDP/VXLAN, lengths, sum, sport 0 */
	__u8 reserved[4];
};

/* Indices of `fwd_stats` (PERCPU_ARRAY): the pipeline's drop reasons by their
 * `DropReason` number (0..PODFWD_DROP__MAX), then what the fast path did. Append only;
 * src/backend/xdp/maps.rs names them in this order. */
enum podfwd_drop {
	PODFWD_DROP_MALFORMED = 0,
	PODFWD_DROP_BAD_CHECKSUM,
	PODFWD_DROP_NOT_IPV4,
	PODFWD_DROP_NO_ROUTE,
	PODFWD_DROP_NEIGHBOUR_UNRESOLVED,
	PODFWD_DROP_MTU,
	PODFWD_DROP_BLACKHOLE,
	PODFWD_DROP_BAD_VXLAN,
	PODFWD_DROP_BAD_VNI,
	PODFWD_DROP_UNKNOWN_VTEP,
	PODFWD_DROP_WRONG_INNER_MAC,
	PODFWD_DROP_FRAGMENT,
	PODFWD_DROP_NO_HEADROOM,
	PODFWD_DROP_HANDOFF_FAILED,
	PODFWD_DROP__MAX,
};

enum podfwd_fwd_stat {
	PODFWD_FWD_FORWARDED = 16,	/* host-gw / local pod: rewritten and redirected */
	PODFWD_FWD_ENCAPSULATED,	/* VXLAN encapsulated and redirected */
	PODFWD_FWD_DECAPSULATED,	/* VXLAN decapsulated (then forwarded or encapsulated) */
	PODFWD_FWD_FORWARDED_BYTES,	/* bytes of the frames forwarded */
	PODFWD_FWD_ENCAPSULATED_BYTES,	/* bytes of the encapsulated frames sent */
	PODFWD_FWD_DECAPSULATED_BYTES,	/* bytes of the inner frames decapsulated */
	PODFWD_FWD_FALLBACK,		/* owned, not finished here: to the xsk or the kernel */
	PODFWD_FWD_DROPPED,		/* dropped with one of the reasons above */
	PODFWD_FWD_CSUM_COMPLETED,	/* a partial TCP/UDP checksum completed (forwarded) */
	PODFWD_FWD__MAX,
};

#endif /* PODFWD_XDP_H */
