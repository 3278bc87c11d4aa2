//! What a reload (SIGHUP) may change while the node runs: the peers and their routes.
//! Everything else (interfaces, cores, backend, mode, node addresses, paths) shapes the
//! started backend and is refused by [`check_live`], naming the config key.

use crate::plan::Plan;

/// A changed key that cannot be applied to a running node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{key} changed ({old} -> {new}); it cannot be applied while podfwd runs: restart podfwd \
     to apply it (nothing was changed)"
)]
pub struct NotLive {
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

/// Checks that `new` differs from the running `old` only in what can be applied live (the
/// peers and their routes); the first other difference is the error.
pub fn check_live(old: &Plan, new: &Plan) -> Result<(), NotLive> {
    fn same<T: PartialEq + std::fmt::Debug>(
        key: &'static str,
        a: &T,
        b: &T,
    ) -> Result<(), NotLive> {
        if a == b {
            Ok(())
        } else {
            Err(NotLive {
                key,
                old: format!("{a:?}"),
                new: format!("{b:?}"),
            })
        }
    }
    let (o, n) = (&old.node, &new.node);
    same("node.ip", &o.ip, &n.ip)?;
    same(
        "node.ip (its prefix length: the uplink subnet)",
        &o.subnet,
        &n.subnet,
    )?;
    same("node.pod_cidr", &o.pod_cidr, &n.pod_cidr)?;
    same("node.uplink", &o.uplink, &n.uplink)?;
    same("node.gateway", &o.gateway, &n.gateway)?;
    same("vxlan.vtep_mac", &o.vtep_mac, &n.vtep_mac)?;
    same("vxlan.vni", &o.vni, &n.vni)?;
    same("vxlan.port", &o.vxlan_port, &n.vxlan_port)?;
    same("vxlan.device", &o.vxlan_device, &n.vxlan_device)?;
    let (o, n) = (&old.dataplane, &new.dataplane);
    same("dataplane.backend", &o.backend, &n.backend)?;
    same("dataplane.mode", &o.mode, &n.mode)?;
    same("dataplane.cores", &o.cores, &n.cores)?;
    same("dataplane.queues", &o.queues, &n.queues)?;
    same("dataplane.xdp_mode", &o.xdp_mode, &n.xdp_mode)?;
    same("dataplane.batch_size", &o.batch_size, &n.batch_size)?;
    same("dataplane.rx_ring_size", &o.rx_ring_size, &n.rx_ring_size)?;
    same("dataplane.tx_ring_size", &o.tx_ring_size, &n.tx_ring_size)?;
    same(
        "dataplane.fill_ring_size",
        &o.fill_ring_size,
        &n.fill_ring_size,
    )?;
    same(
        "dataplane.comp_ring_size",
        &o.comp_ring_size,
        &n.comp_ring_size,
    )?;
    same("dataplane.frame_count", &o.frame_count, &n.frame_count)?;
    same("dataplane.busy_poll", &o.busy_poll, &n.busy_poll)?;
    // Both must be equal for the whole struct to be (new fields are caught below).
    same("dataplane", o, n)?;
    same("control.socket", &old.control.socket, &new.control.socket)?;
    same(
        "control.bpf_pin_dir",
        &old.control.bpf_pin_dir,
        &new.control.bpf_pin_dir,
    )?;
    same("control", &old.control, &new.control)?;
    same("tun.name", &old.tun.name, &new.tun.name)?;
    same("tun.offload", &old.tun.offload, &new.tun.offload)?;
    same("tun", &old.tun, &new.tun)?;
    let names = |p: &Plan| p.ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    same("node.pod_interfaces", &names(old), &names(new))?;
    same("node", &old.node, &new.node)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
[node]
ip = "10.168.0.2/24"
pod_cidr = "10.244.0.0/24"
uplink = "eth0"
pod_interfaces = ["veth-pod"]

[dataplane]
backend = "afxdp"
mode = "vxlan"
cores = [1]

[vxlan]
vtep_mac = "0e:00:00:00:00:0a"

[[peers]]
pod_cidr = "10.244.1.0/24"
node_ip = "10.168.0.3"
vtep_mac = "0e:00:00:00:00:0b"
"#;

    fn plan(toml: &str) -> Plan {
        let c = Config::from_toml_str(toml).unwrap();
        Plan::resolve(&c, None).unwrap()
    }

    #[test]
    fn adding_and_removing_peers_is_live() {
        let old = plan(BASE);
        let more = format!(
            "{BASE}\n[[peers]]\npod_cidr = \"10.244.2.0/24\"\nnode_ip = \"10.168.0.4\"\nvtep_mac = \"0e:00:00:00:00:0c\"\n"
        );
        assert_eq!(check_live(&old, &plan(&more)), Ok(()));
        assert_eq!(check_live(&plan(&more), &old), Ok(()));
    }

    #[test]
    fn changed_cores_are_refused_naming_the_key() {
        let e = check_live(
            &plan(BASE),
            &plan(&BASE.replace("cores = [1]", "cores = [0]")),
        )
        .unwrap_err();
        assert_eq!(e.key, "dataplane.cores");
        assert!(
            e.to_string()
                .contains("dataplane.cores changed ([1] -> [0])"),
            "{e}"
        );
    }

    #[test]
    fn changed_interfaces_backend_mode_and_node_ip_are_refused() {
        let old = plan(BASE);
        for (from, to, key) in [
            ("\"veth-pod\"", "\"veth-pod2\"", "node.pod_interfaces"),
            ("uplink = \"eth0\"", "uplink = \"eth1\"", "node.uplink"),
            ("mode = \"vxlan\"", "mode = \"host-gw\"", "dataplane.mode"),
            (
                "ip = \"10.168.0.2/24\"",
                "ip = \"10.168.0.5/24\"",
                "node.ip",
            ),
        ] {
            let e = check_live(&old, &plan(&BASE.replace(from, to))).unwrap_err();
            assert_eq!(e.key, key);
        }
    }
}
