//! Named set-ups (docs/BENCHMARKS.md, "Limits and set-ups"): what node A's veths look
//! like, the knobs that move the kernel baseline. `podfwd-bench run --setups a,b,...`
//! runs every scenario under each of them, rounds interleaving set-ups and scenarios;
//! without `--setups` the single set-up of the flags `--qdisc`, `--flows`,
//! `--udp-gro-fwd`, `--defer-hard-irqs`, `--gro-flush-timeout` is measured.

use crate::{report, Qdisc};

/// One set-up of node A's veths and the generator's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupSpec {
    /// Its name in `--setups` and in the results ("custom" for flags that match none).
    pub name: &'static str,
    pub qdisc: Qdisc,
    /// UDP flows (source ports) of the generator.
    pub flows: u16,
    /// `rx-udp-gro-forwarding` on node A's two veths.
    pub udp_gro_fwd: bool,
    /// `napi_defer_hard_irqs` of node A's two veths.
    pub defer_hard_irqs: u32,
    /// `gro_flush_timeout` (ns) of node A's two veths.
    pub gro_flush_timeout: u64,
}

const fn setup(
    name: &'static str,
    qdisc: Qdisc,
    flows: u16,
    udp_gro_fwd: bool,
    defer_hard_irqs: u32,
    gro_flush_timeout: u64,
) -> SetupSpec {
    SetupSpec {
        name,
        qdisc,
        flows,
        udp_gro_fwd,
        defer_hard_irqs,
        gro_flush_timeout,
    }
}

/// The seven set-ups a fair comparison reports (docs/BENCHMARKS.md), in that order.
/// `uplink` is the one that resembles a real node.
pub const SETUPS: [SetupSpec; 7] = [
    // The harness's default: pfifo on every veth end (TCP gets back-pressure).
    setup("default", Qdisc::Pfifo, 1024, false, 0, 0),
    // A real node's qdiscs: pfifo on the underlay veths, noqueue on the pod veths.
    setup("uplink", Qdisc::Uplink, 1024, false, 0, 0),
    // veth's own default on every end.
    setup("noqueue", Qdisc::Noqueue, 1024, false, 0, 0),
    // One UDP flow.
    setup("uplink-1flow", Qdisc::Uplink, 1, false, 0, 0),
    // One flow with UDP GRO forwarding: the kernel routes merged skbs.
    setup("uplink-1flow-grofwd", Qdisc::Uplink, 1, true, 0, 0),
    // Many flows with UDP GRO forwarding: round-robin flows, little to merge.
    setup("uplink-grofwd", Qdisc::Uplink, 1024, true, 0, 0),
    // Deferred NAPI: re-polled by a 20 us timer instead of woken per burst.
    setup("uplink-deferred", Qdisc::Uplink, 1024, false, 2, 20_000),
];

impl SetupSpec {
    /// The set-up of the single set-up flags, named after the table's set-up it equals.
    pub fn from_flags(
        qdisc: Qdisc,
        flows: u16,
        udp_gro_fwd: bool,
        defer_hard_irqs: u32,
        gro_flush_timeout: u64,
    ) -> SetupSpec {
        let s = setup(
            "custom",
            qdisc,
            flows,
            udp_gro_fwd,
            defer_hard_irqs,
            gro_flush_timeout,
        );
        SETUPS
            .iter()
            .find(|t| {
                SetupSpec {
                    name: "custom",
                    ..**t
                } == s
            })
            .copied()
            .unwrap_or(s)
    }

    /// What the results record.
    pub fn to_report(self) -> report::Setup {
        report::Setup {
            name: self.name.to_string(),
            qdisc: self.qdisc.to_string(),
            flows: self.flows,
            udp_gro_fwd: self.udp_gro_fwd,
            defer_hard_irqs: self.defer_hard_irqs,
            gro_flush_timeout_ns: self.gro_flush_timeout,
        }
    }
}

/// `--setups`: names of [`SETUPS`], or `all` for the seven; an unknown name or one
/// listed twice is an error that lists the valid ones.
pub fn parse(names: &[String]) -> Result<Vec<SetupSpec>, String> {
    let valid = || {
        SETUPS
            .iter()
            .map(|s| s.name)
            .chain(["all"])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out: Vec<SetupSpec> = Vec::new();
    for n in names.iter().map(|n| n.trim()) {
        let picked: Vec<SetupSpec> = match n {
            "all" => SETUPS.to_vec(),
            _ => vec![*SETUPS
                .iter()
                .find(|s| s.name == n)
                .ok_or_else(|| format!("unknown set-up {n:?}; valid: {}", valid()))?],
        };
        for s in picked {
            if out.iter().any(|o| o.name == s.name) {
                return Err(format!("set-up {:?} is listed twice in --setups", s.name));
            }
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(format!("--setups is empty; valid: {}", valid()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn setups_parse_by_name_in_the_order_given_and_all_is_the_seven() {
        let s = parse(&names(&["uplink-deferred", "default"])).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "uplink-deferred");
        assert_eq!((s[0].defer_hard_irqs, s[0].gro_flush_timeout), (2, 20_000));
        assert_eq!(s[0].qdisc, Qdisc::Uplink);
        assert_eq!(s[1], SETUPS[0]);
        let all: Vec<&str> = parse(&names(&["all"]))
            .unwrap()
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            all,
            [
                "default",
                "uplink",
                "noqueue",
                "uplink-1flow",
                "uplink-1flow-grofwd",
                "uplink-grofwd",
                "uplink-deferred"
            ]
        );
        let one = parse(&names(&["uplink-1flow-grofwd"])).unwrap()[0];
        assert_eq!((one.flows, one.udp_gro_fwd), (1, true));
    }

    #[test]
    fn unknown_or_repeated_setups_are_refused_with_the_valid_names() {
        let e = parse(&names(&["default", "fast"])).unwrap_err();
        assert!(e.contains("unknown set-up \"fast\""), "{e}");
        assert!(
            e.contains("default, uplink, noqueue, uplink-1flow, uplink-1flow-grofwd, uplink-grofwd, uplink-deferred, all"),
            "{e}"
        );
        let e = parse(&names(&["uplink", "uplink"])).unwrap_err();
        assert!(e.contains("\"uplink\" is listed twice"), "{e}");
        let e = parse(&names(&["all", "noqueue"])).unwrap_err();
        assert!(e.contains("\"noqueue\" is listed twice"), "{e}");
        assert!(parse(&[]).unwrap_err().contains("valid: default"));
    }

    #[test]
    fn the_single_setup_flags_are_named_after_the_setup_they_equal() {
        assert_eq!(
            SetupSpec::from_flags(Qdisc::Pfifo, 1024, false, 0, 0).name,
            "default"
        );
        assert_eq!(
            SetupSpec::from_flags(Qdisc::Uplink, 1, true, 0, 0).name,
            "uplink-1flow-grofwd"
        );
        let c = SetupSpec::from_flags(Qdisc::Noqueue, 64, false, 0, 0);
        assert_eq!((c.name, c.flows), ("custom", 64));
        let r = SETUPS[6].to_report();
        assert_eq!(
            (r.name.as_str(), r.qdisc.as_str(), r.gro_flush_timeout_ns),
            ("uplink-deferred", "uplink", 20_000)
        );
    }
}
