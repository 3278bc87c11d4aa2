//! One text line per traced frame, like `tcpdump -n` with podfwd's verdict in front:
//!
//! ```text
//! 03:31:02.123456 cpu1 eth0 drop unknown_vtep: IP 10.168.0.99.40000 > 10.168.0.2.8472: VXLAN, vni 1: IP 10.244.1.2.99 > 10.244.0.2.5000: UDP, length 5, ttl 64
//! 03:31:02.123461 cpu1 veth-pod tx eth0: IP 10.244.0.2.99 > 10.244.1.2.5000: UDP, length 5, ttl 63
//! ```
//!
//! Time of day in UTC, the worker's CPU, the ingress port, the verdict (`tx PORT`,
//! `to_kernel`, `drop REASON`), then the headers decoded with etherparse (Ethernet, IPv4,
//! UDP/TCP/ICMP, and one level of VXLAN on ports 8472 and 4789). A frame that does not
//! decode says at which layer and why, and never makes the printer fail.

use super::protocol::{FrameRecord, WireVerdict};
use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4HeaderSlice, TcpHeaderSlice, UdpHeader,
};
use std::fmt::Write;

/// The UDP ports decoded as VXLAN (flannel's and IANA's).
const VXLAN_PORTS: [u16; 2] = [8472, 4789];

fn port_name(ports: &[String], p: u16) -> String {
    ports
        .get(usize::from(p))
        .cloned()
        .unwrap_or_else(|| format!("port{p}"))
}

/// The line for one frame (no newline).
pub fn line(f: &FrameRecord, ports: &[String]) -> String {
    let mut s = String::with_capacity(160);
    let secs = f.ts_ns / 1_000_000_000;
    let micros = (f.ts_ns % 1_000_000_000) / 1000;
    let day = secs % 86_400;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}.{micros:06} cpu{} {} ",
        day / 3600,
        day / 60 % 60,
        day % 60,
        f.worker,
        port_name(ports, f.ingress)
    );
    match &f.verdict {
        WireVerdict::Tx(p) => {
            let _ = write!(s, "tx {}", port_name(ports, *p));
        }
        v => {
            let _ = write!(s, "{v}");
        }
    }
    s.push_str(": ");
    ethernet(&mut s, &f.data, f.orig_len as usize, true);
    if f.data.len() < f.orig_len as usize {
        let _ = write!(s, " [{} of {} bytes]", f.data.len(), f.orig_len);
    }
    s
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Decodes an Ethernet frame of `len` bytes (of which `data` were captured).
fn ethernet(s: &mut String, data: &[u8], len: usize, outer: bool) {
    let (eth, rest) = match Ethernet2Header::from_slice(data) {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(s, "malformed Ethernet: {e}, length {len}");
            return;
        }
    };
    if eth.ether_type != EtherType::IPV4 {
        let _ = write!(
            s,
            "{} > {}, ethertype 0x{:04x}, length {len}",
            mac(eth.source),
            mac(eth.destination),
            eth.ether_type.0
        );
        return;
    }
    let ip = match Ipv4HeaderSlice::from_slice(rest) {
        Ok(ip) => ip,
        Err(e) => {
            let _ = write!(
                s,
                "{} > {}, malformed IPv4: {e}, length {len}",
                mac(eth.source),
                mac(eth.destination)
            );
            return;
        }
    };
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    let payload = &rest[ip.slice().len()..];
    let ip_payload_len = usize::from(ip.total_len()).saturating_sub(ip.slice().len());
    let mut tail = format!(", ttl {}", ip.ttl());
    if ip.to_header().calc_header_checksum() != ip.header_checksum() {
        tail.push_str(", bad cksum");
    }
    if ip.is_fragmenting_payload() {
        let _ = write!(
            tail,
            ", frag offset {}{}",
            ip.fragments_offset().value() * 8,
            if ip.more_fragments() { "+" } else { "" }
        );
    }
    match ip.protocol() {
        IpNumber::UDP if ip.fragments_offset().value() == 0 => match UdpHeader::from_slice(payload)
        {
            Ok((udp, inner)) => {
                let _ = write!(
                    s,
                    "IP {src}.{} > {dst}.{}: ",
                    udp.source_port, udp.destination_port
                );
                let udp_payload = usize::from(udp.length).saturating_sub(8);
                if outer && VXLAN_PORTS.contains(&udp.destination_port) && inner.len() >= 8 {
                    let vni = u32::from_be_bytes([0, inner[4], inner[5], inner[6]]);
                    let flags = if inner[0] & 0x08 != 0 {
                        ""
                    } else {
                        ", no I flag"
                    };
                    let _ = write!(s, "VXLAN{flags}, vni {vni}{tail}: ");
                    ethernet(s, &inner[8..], udp_payload.saturating_sub(8), false);
                } else {
                    let _ = write!(s, "UDP, length {udp_payload}{tail}");
                }
            }
            Err(e) => {
                let _ = write!(s, "IP {src} > {dst}: malformed UDP: {e}{tail}");
            }
        },
        IpNumber::TCP if ip.fragments_offset().value() == 0 => {
            match TcpHeaderSlice::from_slice(payload) {
                Ok(tcp) => {
                    let mut flags = String::new();
                    for (on, c) in [
                        (tcp.syn(), 'S'),
                        (tcp.fin(), 'F'),
                        (tcp.rst(), 'R'),
                        (tcp.psh(), 'P'),
                        (tcp.ack(), '.'),
                    ] {
                        if on {
                            flags.push(c);
                        }
                    }
                    let data_len = ip_payload_len.saturating_sub(tcp.slice().len());
                    let _ = write!(
                    s,
                    "IP {src}.{} > {dst}.{}: Flags [{flags}], seq {}, win {}, length {data_len}{tail}",
                    tcp.source_port(),
                    tcp.destination_port(),
                    tcp.sequence_number(),
                    tcp.window_size()
                );
                }
                Err(e) => {
                    let _ = write!(s, "IP {src} > {dst}: malformed TCP: {e}{tail}");
                }
            }
        }
        IpNumber::ICMP if payload.len() >= 2 => {
            let _ = write!(
                s,
                "IP {src} > {dst}: ICMP type {} code {}, length {ip_payload_len}{tail}",
                payload[0], payload[1]
            );
        }
        p => {
            let _ = write!(
                s,
                "IP {src} > {dst}: ip-proto-{}, length {ip_payload_len}{tail}",
                p.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn rec(data: Vec<u8>, verdict: WireVerdict) -> FrameRecord {
        FrameRecord {
            // 2026-12-04 03:31:02.123456789 UTC
            ts_ns: 1_796_355_062_123_456_789,
            worker: 1,
            ingress: 0,
            orig_len: data.len() as u32,
            data,
            verdict,
        }
    }

    fn ports() -> Vec<String> {
        vec!["eth0".into(), "veth-pod".into()]
    }

    /// VXLAN from 10.168.0.99 (no known peer) to node 10.168.0.2, VNI 1, inner UDP.
    pub(crate) fn vxlan_from_unknown_vtep() -> Vec<u8> {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([0x0e, 0, 0, 0, 0, 0x0b], [0x0e, 0, 0, 0, 0, 0x0a])
            .ipv4([10, 244, 1, 2], [10, 244, 0, 2], 64)
            .udp(99, 5000)
            .write(&mut inner, b"hello")
            .unwrap();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&inner);
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xb1], [2, 0, 0, 0, 0, 0xa1])
            .ipv4([10, 168, 0, 99], [10, 168, 0, 2], 64)
            .udp(40000, 8472)
            .write(&mut out, &vx)
            .unwrap();
        out
    }

    #[test]
    fn a_vxlan_frame_from_an_unknown_vtep_prints_as_one_line_with_both_layers_and_the_reason() {
        let l = line(
            &rec(
                vxlan_from_unknown_vtep(),
                WireVerdict::Drop("unknown_vtep".into()),
            ),
            &ports(),
        );
        assert_eq!(
            l,
            "03:31:02.123456 cpu1 eth0 drop unknown_vtep: \
             IP 10.168.0.99.40000 > 10.168.0.2.8472: VXLAN, vni 1, ttl 64: \
             IP 10.244.1.2.99 > 10.244.0.2.5000: UDP, length 5, ttl 64"
        );
    }

    #[test]
    fn a_malformed_frame_prints_as_one_line_naming_the_layer() {
        // An IPv4 frame cut inside its IP header.
        let mut f = vxlan_from_unknown_vtep();
        f.truncate(14 + 12);
        let l = line(&rec(f, WireVerdict::Drop("malformed".into())), &ports());
        assert!(!l.contains('\n'));
        assert!(
            l.starts_with(
                "03:31:02.123456 cpu1 eth0 drop malformed: 02:00:00:00:00:b1 > 02:00:00:00:00:a1, malformed IPv4: "
            ),
            "{l}"
        );
        assert!(l.ends_with("length 26"), "{l}");
        // Shorter than an Ethernet header.
        let l = line(
            &rec(vec![1, 2, 3], WireVerdict::Drop("malformed".into())),
            &ports(),
        );
        assert!(l.contains("drop malformed: malformed Ethernet: "), "{l}");
        assert!(l.ends_with("length 3"), "{l}");
    }

    #[test]
    fn forwarded_tcp_and_truncated_captures_say_so() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 244, 0, 2], [10, 244, 1, 2], 63)
            .tcp(1234, 80, 7, 512)
            .syn()
            .write(&mut f, &[0; 400])
            .unwrap();
        let mut r = rec(f, WireVerdict::Tx(0));
        r.orig_len = r.data.len() as u32;
        r.data.truncate(256);
        r.ingress = 1;
        assert_eq!(
            line(&r, &ports()),
            "03:31:02.123456 cpu1 veth-pod tx eth0: IP 10.244.0.2.1234 > 10.244.1.2.80: \
             Flags [S], seq 7, win 512, length 400, ttl 63 [256 of 454 bytes]"
        );
    }
}
