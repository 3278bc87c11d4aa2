//! Entry point for the netlink fuzz target (`fuzz/`, issue 9): not part of the API.
//!
//! The reply parsers are crate-private; [`parse_any`] runs every one of them over an
//! arbitrary datagram, as the sockets would on a kernel reply, and discards the results.
//! Their contract: a malformed or unexpected message is an error or is skipped, never a
//! panic, an endless loop or a read out of bounds.

use super::link::{parse_ipv4_addr, parse_link};
use super::neigh::parse_neigh;
use super::nud;
use super::socket::{
    attrs, decode_error, messages, RTM_DELNEIGH, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH,
};

/// Splits `datagram` into messages and gives each one to every parser: as the type it
/// carries and as each type a parser accepts (so a mutated type byte does not hide the
/// payload from the parsers). Returns the number of messages split off.
pub fn parse_any(datagram: &[u8]) -> usize {
    let mut n = 0;
    for m in messages(datagram) {
        let Ok(m) = m else { break };
        n += 1;
        let _ = decode_error(&m);
        for ty in [m.ty, RTM_NEWNEIGH, RTM_DELNEIGH, RTM_NEWLINK, RTM_NEWADDR] {
            let m = super::socket::RawMsg { ty, ..m };
            if let Some(ev) = parse_neigh(&m) {
                let _ = nud::name(ev.state);
            }
            let _ = parse_link(&m).map_err(|e| e.to_string());
            let _ = parse_ipv4_addr(&m);
        }
        for _ in attrs(m.payload) {}
    }
    n
}
