//! Fuzz target: the hand-written rtnetlink reply parsers (`src/netlink/`) on arbitrary
//! datagrams. Every parser runs over every message; none may panic or loop.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let n = podfwd::netlink::fuzzing::parse_any(data);
        // Every message split off holds at least a 16-byte header.
        assert!(n <= data.len() / 16);
    });
}
