//! Fuzz target: the config parser and the plan. Arbitrary UTF-8 text goes through
//! `Config::from_toml_str`; a config it accepts is resolved into a `Plan` with several
//! uplink subnets (none, the node's own, wider and narrower ones) and printed, as
//! `podfwd check` does. Errors are formatted too. Nothing may panic.

use podfwd::config::Config;
use podfwd::lpm::Ipv4Net;
use podfwd::plan::Plan;
use std::fmt::Write;
use std::net::Ipv4Addr;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let mut out = String::new();
        let config = match Config::from_toml_str(text) {
            Ok(c) => c,
            Err(e) => {
                let _ = write!(out, "{e} {:?} {:?}", e.field(), e.problem());
                return;
            }
        };
        let _ = config.needs_vtep_macs();
        let ip = config.node.ip;
        let subnets = [
            None,
            Some(net(ip, 32)),
            Some(net(ip, 24)),
            Some(net(ip, 8)),
            Some(net(ip, 0)),
            Some(net(Ipv4Addr::new(10, 168, 0, 0), 24)),
        ];
        for s in subnets {
            match Plan::resolve(&config, s) {
                Ok(plan) => {
                    let _ = write!(out, "{plan}");
                    for i in 0..=config.peers.len() {
                        let _ = plan.peer_route(i);
                    }
                }
                Err(e) => {
                    let _ = write!(out, "{e}");
                }
            }
            out.clear();
        }
    });
}

fn net(ip: Ipv4Addr, len: u8) -> Ipv4Net {
    Ipv4Net::new(ip, len).expect("a valid prefix length")
}
