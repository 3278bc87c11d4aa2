//! The network config at `<prefix>/config`, read exactly as flanneld reads it.
//!
//! flanneld decodes it with Go's `encoding/json`: keys match case-insensitively
//! (`"vni"`, `"VNI"` and `"Vni"` are one key), unknown keys are ignored, and the defaults
//! are filled in by flannel's `CheckNetworkConfig`: `SubnetLen` 24 (or prefix + 2 for
//! networks smaller than a /22), `SubnetMin` the second subnet, `SubnetMax` the last one.
//! The backend defaults are vxlan's: `VNI` 1, `Port` 0 (the kernel's 8472).
//!
//! podfwd serves IPv4 with the `vxlan` and `host-gw` backends; any other setting that
//! would make its routes differ from flanneld's is refused with the key's name.

use crate::config::Mode;
use ipnet::Ipv4Net;
use serde_json::{Map, Value};
use std::net::Ipv4Addr;

/// The kernel's VXLAN port, which flanneld uses when `Backend.Port` is 0 (the default).
pub const KERNEL_VXLAN_PORT: u16 = 8472;
/// flannel's vxlan backend default VNI.
pub const DEFAULT_VNI: u32 = 1;
/// flanneld's vxlan `encapOverhead`: outer IPv4 + UDP + VXLAN + inner Ethernet.
pub const VXLAN_ENCAP_OVERHEAD: u32 = 50;
/// Largest VNI (24 bits).
const MAX_VNI: u64 = (1 << 24) - 1;

/// A validated flannel network config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `Network`, host bits cleared (Go's `net.ParseCIDR` does the same).
    pub network: Ipv4Net,
    /// `SubnetLen`, after flannel's defaulting.
    pub subnet_len: u8,
    /// First subnet a node may get (`SubnetMin`, default: the network's second subnet).
    pub subnet_min: Ipv4Addr,
    /// Last subnet a node may get (`SubnetMax`, default: the network's last subnet).
    pub subnet_max: Ipv4Addr,
    pub backend: BackendConfig,
}

/// `Backend`: how nodes reach each other's subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendConfig {
    Vxlan(VxlanBackend),
    HostGw,
}

/// `Backend` with `"Type": "vxlan"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanBackend {
    /// `Backend.VNI` (default 1).
    pub vni: u32,
    /// `Backend.Port` as written: 0 (the default) means the kernel's 8472.
    pub port: u16,
    /// `Backend.MTU`, if set (flanneld defaults it to the uplink's MTU).
    pub mtu: Option<u32>,
    /// `Backend.DirectRouting`: peers on the uplink's subnet are reached host-gw style.
    pub direct_routing: bool,
}

/// Why a network config was refused. Each names the key as flannel's docs spell it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkConfigError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("{key} is missing; {why}")]
    Missing {
        key: &'static str,
        why: &'static str,
    },
    #[error("{key}: {value} {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("{key}: {value} is not supported by podfwd ({why})")]
    Unsupported {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

impl NetworkConfigError {
    /// The key at fault (`Backend.Type`, `SubnetLen`, ...), if one is.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            NetworkConfigError::NotJson(_) => None,
            NetworkConfigError::Missing { key, .. }
            | NetworkConfigError::Invalid { key, .. }
            | NetworkConfigError::Unsupported { key, .. } => Some(key),
        }
    }
}

type R<T> = Result<T, NetworkConfigError>;

/// Go's `encoding/json` field lookup: the exact name first, then any case-insensitive one.
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn invalid(key: &'static str, v: &Value, why: impl Into<String>) -> NetworkConfigError {
    NetworkConfigError::Invalid {
        key,
        value: v.to_string(),
        why: why.into(),
    }
}

/// A non-negative JSON integer no larger than `max` (Go decodes into unsigned ints).
fn uint(key: &'static str, v: &Value, max: u64) -> R<u64> {
    match v.as_u64() {
        Some(n) if n <= max => Ok(n),
        Some(_) => Err(invalid(
            key,
            v,
            format!("is out of range; expected 0..={max}"),
        )),
        None => Err(invalid(key, v, "is not a non-negative integer")),
    }
}

fn boolean(key: &'static str, v: &Value) -> R<bool> {
    v.as_bool()
        .ok_or_else(|| invalid(key, v, "is not true or false"))
}

/// An IPv4 address as flannel's `ip.IP4` decodes it: a JSON string `"a.b.c.d"`.
fn ipv4(key: &'static str, v: &Value) -> R<Ipv4Addr> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(key, v, "is not an IPv4 address like \"10.244.1.0\""))
}

impl NetworkConfig {
    /// Parses and checks the value of `<prefix>/config`.
    pub fn parse(json: &[u8]) -> R<NetworkConfig> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| NetworkConfigError::NotJson(e.to_string()))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| NetworkConfigError::NotJson(format!("found {doc}")))?;

        if let Some(v) = field(obj, "EnableIPv4") {
            if !boolean("EnableIPv4", v)? {
                return Err(NetworkConfigError::Unsupported {
                    key: "EnableIPv4",
                    value: v.to_string(),
                    why: "podfwd forwards IPv4 pod traffic; an IPv6-only network needs flanneld",
                });
            }
        }
        if let Some(v) = field(obj, "EnableIPv6") {
            if boolean("EnableIPv6", v)? {
                return Err(NetworkConfigError::Unsupported {
                    key: "EnableIPv6",
                    value: v.to_string(),
                    why: "podfwd forwards IPv4 only; dual-stack networks need flanneld",
                });
            }
        }

        let network = match field(obj, "Network") {
            None | Some(Value::Null) => {
                return Err(NetworkConfigError::Missing {
                    key: "Network",
                    why: "give the pod network, like \"10.244.0.0/16\"",
                })
            }
            Some(v) => {
                let net: Ipv4Net = v
                    .as_str()
                    .filter(|s| s.contains('/'))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        invalid(
                            "Network",
                            v,
                            "is not an IPv4 network like \"10.244.0.0/16\"",
                        )
                    })?;
                let net = net.trunc();
                // flannel's IP4Net.Empty(): 0.0.0.0/0 counts as "not set".
                if net.prefix_len() == 0 && net.addr().is_unspecified() {
                    return Err(invalid(
                        "Network",
                        v,
                        "is empty; flannel needs a real pod network (\"please define a correct Network parameter\")",
                    ));
                }
                net
            }
        };
        let prefix = network.prefix_len();

        let subnet_len = match field(obj, "SubnetLen") {
            None | Some(Value::Null) => 0,
            Some(v) => {
                let n = uint("SubnetLen", v, 32)? as u8;
                if n > 30 {
                    return Err(invalid(
                        "SubnetLen",
                        v,
                        "is too long; SubnetLen must be less than /31",
                    ));
                }
                if n > 0 && n < prefix + 2 {
                    return Err(invalid(
                        "SubnetLen",
                        v,
                        format!(
                            "is too short for Network {network}: the network must hold at least four subnets (SubnetLen >= {})",
                            prefix + 2
                        ),
                    ));
                }
                n
            }
        };
        let subnet_len = if subnet_len > 0 {
            subnet_len
        } else if prefix > 28 {
            return Err(NetworkConfigError::Invalid {
                key: "Network",
                value: format!("\"{network}\""),
                why: "is too small; the smallest useful network is a /28".into(),
            });
        } else if prefix <= 22 {
            24
        } else {
            prefix + 2
        };

        let size = 1u32 << (32 - subnet_len);
        let base = u32::from(network.network());
        let mask = u32::MAX << (32 - subnet_len);
        let bound = |key: &'static str, default: u32| -> R<Ipv4Addr> {
            let Some(v) = field(obj, key).filter(|v| !v.is_null()) else {
                return Ok(Ipv4Addr::from(default));
            };
            let a = ipv4(key, v)?;
            if a.is_unspecified() {
                return Ok(Ipv4Addr::from(default)); // flannel: 0.0.0.0 means "not set"
            }
            if !network.contains(&a) {
                return Err(invalid(key, v, format!("is not inside Network {network}")));
            }
            if u32::from(a) & mask != u32::from(a) {
                return Err(invalid(
                    key,
                    v,
                    format!("is not on a SubnetLen (/{subnet_len}) boundary"),
                ));
            }
            Ok(a)
        };
        // The first subnet is skipped: its .0 would be the network's own address.
        let subnet_min = bound("SubnetMin", base.wrapping_add(size))?;
        let last = u32::from(network.broadcast())
            .wrapping_add(1)
            .wrapping_sub(size);
        let subnet_max = bound("SubnetMax", last)?;

        let backend = Self::backend(field(obj, "Backend"))?;
        Ok(NetworkConfig {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            backend,
        })
    }

    fn backend(v: Option<&Value>) -> R<BackendConfig> {
        let obj = match v {
            // flannel: no Backend means the "udp" backend.
            None | Some(Value::Null) => {
                return Err(NetworkConfigError::Unsupported {
                    key: "Backend.Type",
                    value: "\"udp\" (no Backend given)".into(),
                    why: "podfwd implements \"vxlan\" and \"host-gw\"; add \"Backend\": {\"Type\": \"vxlan\"}",
                })
            }
            Some(v) => v
                .as_object()
                .ok_or_else(|| invalid("Backend", v, "is not a JSON object"))?,
        };
        let ty = match field(obj, "Type") {
            None | Some(Value::Null) => String::new(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| invalid("Backend.Type", v, "is not a string"))?
                .to_ascii_lowercase(), // flannel's backend manager lowercases the type
        };
        match ty.as_str() {
            "vxlan" => {
                let vni = match field(obj, "VNI").filter(|v| !v.is_null()) {
                    None => DEFAULT_VNI,
                    Some(v) => uint("Backend.VNI", v, MAX_VNI)? as u32,
                };
                let port = match field(obj, "Port").filter(|v| !v.is_null()) {
                    None => 0,
                    Some(v) => uint("Backend.Port", v, u16::MAX.into())? as u16,
                };
                let mtu = match field(obj, "MTU").filter(|v| !v.is_null()) {
                    None => None,
                    Some(v) => match uint("Backend.MTU", v, u32::MAX.into())? {
                        0 => None,
                        n => Some(n as u32),
                    },
                };
                let flag = |key: &'static str, name: &str| -> R<bool> {
                    field(obj, name)
                        .filter(|v| !v.is_null())
                        .map_or(Ok(false), |v| boolean(key, v))
                };
                let direct_routing = flag("Backend.DirectRouting", "DirectRouting")?;
                if flag("Backend.GBP", "GBP")? {
                    return Err(NetworkConfigError::Unsupported {
                        key: "Backend.GBP",
                        value: "true".into(),
                        why: "podfwd's VXLAN frames carry no group policy extension",
                    });
                }
                if flag("Backend.Learning", "Learning")? {
                    return Err(NetworkConfigError::Unsupported {
                        key: "Backend.Learning",
                        value: "true".into(),
                        why: "podfwd programs every VTEP from the registry (nolearning)",
                    });
                }
                Ok(BackendConfig::Vxlan(VxlanBackend {
                    vni,
                    port,
                    mtu,
                    direct_routing,
                }))
            }
            "host-gw" => Ok(BackendConfig::HostGw),
            "" => Err(NetworkConfigError::Missing {
                key: "Backend.Type",
                why: "give \"vxlan\" or \"host-gw\"",
            }),
            _ => Err(NetworkConfigError::Unsupported {
                key: "Backend.Type",
                value: format!(
                    "{:?}",
                    field(obj, "Type").and_then(Value::as_str).unwrap_or("")
                ),
                why: "podfwd implements \"vxlan\" and \"host-gw\"",
            }),
        }
    }

    /// podfwd's `dataplane.mode` for this network.
    pub fn mode(&self) -> Mode {
        match self.backend {
            BackendConfig::HostGw => Mode::HostGw,
            BackendConfig::Vxlan(v) if v.direct_routing => Mode::Auto,
            BackendConfig::Vxlan(_) => Mode::Vxlan,
        }
    }

    /// flannel's `BackendType` string for leases in this network.
    pub fn backend_type(&self) -> &'static str {
        match self.backend {
            BackendConfig::HostGw => "host-gw",
            BackendConfig::Vxlan(_) => "vxlan",
        }
    }

    /// The VNI (the default 1 for host-gw, where it is unused).
    pub fn vni(&self) -> u32 {
        match self.backend {
            BackendConfig::Vxlan(v) => v.vni,
            BackendConfig::HostGw => DEFAULT_VNI,
        }
    }

    /// The UDP port VXLAN frames use: `Backend.Port`, or the kernel's 8472 when it is 0.
    pub fn vxlan_port(&self) -> u16 {
        match self.backend {
            BackendConfig::Vxlan(v) if v.port != 0 => v.port,
            _ => KERNEL_VXLAN_PORT,
        }
    }

    /// `FLANNEL_MTU` as flanneld computes it from the uplink's MTU: host-gw uses the
    /// uplink's; vxlan `Backend.MTU` (default: the uplink's) less 50 bytes of headers.
    pub fn pod_mtu(&self, uplink_mtu: u32) -> u32 {
        match self.backend {
            BackendConfig::HostGw => uplink_mtu,
            BackendConfig::Vxlan(v) => v
                .mtu
                .unwrap_or(uplink_mtu)
                .saturating_sub(VXLAN_ENCAP_OVERHEAD),
        }
    }

    /// Whether `subnet` is one this network hands out (flannel's `isSubnetConfigCompat`).
    pub fn is_compatible(&self, subnet: Ipv4Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.network() >= self.subnet_min
            && subnet.network() <= self.subnet_max
    }

    /// Every subnet in [SubnetMin, SubnetMax], in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let size = 1u64 << (32 - self.subnet_len);
        let min = u64::from(u32::from(self.subnet_min));
        let max = u64::from(u32::from(self.subnet_max));
        let len = self.subnet_len;
        (min..=max)
            .step_by(size as usize)
            .map(move |a| Ipv4Net::new(Ipv4Addr::from(a as u32), len).expect("prefix length <= 30"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> R<NetworkConfig> {
        NetworkConfig::parse(s.as_bytes())
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn flannels_documented_config_gets_flannels_defaults() {
        let c = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap();
        assert_eq!(c.network, net("10.244.0.0/16"));
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 244, 255, 0));
        assert_eq!(
            c.backend,
            BackendConfig::Vxlan(VxlanBackend {
                vni: 1,
                port: 0,
                mtu: None,
                direct_routing: false
            })
        );
        assert_eq!(c.vxlan_port(), 8472);
        assert_eq!(c.mode(), Mode::Vxlan);
        assert_eq!(c.subnets().count(), 255);
        assert_eq!(c.pod_mtu(1500), 1450);
    }

    #[test]
    fn small_networks_split_in_four_as_flannel_does() {
        let c = parse(r#"{"Network":"10.1.0.0/26","Backend":{"Type":"host-gw"}}"#).unwrap();
        assert_eq!(c.subnet_len, 28);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 1, 0, 16));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 1, 0, 48));
        let all: Vec<_> = c.subnets().collect();
        assert_eq!(
            all,
            vec![
                net("10.1.0.16/28"),
                net("10.1.0.32/28"),
                net("10.1.0.48/28")
            ]
        );
        assert_eq!(c.mode(), Mode::HostGw);
        assert_eq!(c.pod_mtu(1500), 1500);
        let c = parse(r#"{"Network":"10.1.0.0/22","Backend":{"Type":"host-gw"}}"#).unwrap();
        assert_eq!(c.subnet_len, 24);
    }

    #[test]
    fn keys_match_case_insensitively_like_go() {
        let c = parse(
            r#"{"network":"10.5.0.0/16","subnetlen":25,"SubnetMin":"10.5.3.0","SUBNETMAX":"10.5.9.128",
                "backend":{"type":"VXLAN","vni":42,"port":4789,"directRouting":true,"MTU":1400,"MacPrefix":"0E:00"}}"#,
        )
        .unwrap();
        assert_eq!(c.subnet_len, 25);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 5, 3, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 5, 9, 128));
        assert_eq!(c.vni(), 42);
        assert_eq!(c.vxlan_port(), 4789);
        assert_eq!(c.mode(), Mode::Auto);
        assert!(matches!(c.backend, BackendConfig::Vxlan(v) if v.mtu == Some(1400)));
        assert_eq!(c.pod_mtu(9000), 1350);
        assert!(c.is_compatible(net("10.5.3.0/25")));
        assert!(!c.is_compatible(net("10.5.3.0/24")));
        assert!(!c.is_compatible(net("10.5.2.128/25")));
        assert!(!c.is_compatible(net("10.5.10.0/25")));
    }

    #[test]
    fn network_host_bits_are_cleared_like_parsecidr() {
        let c = parse(r#"{"Network":"10.244.7.9/16","Backend":{"Type":"host-gw"}}"#).unwrap();
        assert_eq!(c.network, net("10.244.0.0/16"));
    }

    #[test]
    fn unsupported_settings_name_their_key() {
        let cases = [
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}"#,
                "Backend.Type",
                "wireguard",
            ),
            (r#"{"Network":"10.244.0.0/16"}"#, "Backend.Type", "udp"),
            (
                r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}"#,
                "EnableIPv6",
                "true",
            ),
            (
                r#"{"Network":"10.244.0.0/16","EnableIPv4":false,"Backend":{"Type":"vxlan"}}"#,
                "EnableIPv4",
                "false",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","GBP":true}}"#,
                "Backend.GBP",
                "true",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","Learning":true}}"#,
                "Backend.Learning",
                "true",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#,
                "Backend.VNI",
                "16777216",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","Port":-1}}"#,
                "Backend.Port",
                "-1",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}"#,
                "SubnetLen",
                "31",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetLen":17,"Backend":{"Type":"vxlan"}}"#,
                "SubnetLen",
                "17",
            ),
            (
                r#"{"Network":"10.244.0.0/29","Backend":{"Type":"vxlan"}}"#,
                "Network",
                "10.244.0.0/29",
            ),
            (
                r#"{"Network":"10.244.0.0","Backend":{"Type":"vxlan"}}"#,
                "Network",
                "10.244.0.0",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetMin":"10.245.0.0","Backend":{"Type":"vxlan"}}"#,
                "SubnetMin",
                "10.245.0.0",
            ),
            (
                r#"{"Network":"10.244.0.0/16","SubnetMax":"10.244.3.7","Backend":{"Type":"vxlan"}}"#,
                "SubnetMax",
                "10.244.3.7",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}"#,
                "Backend.DirectRouting",
                "yes",
            ),
        ];
        for (json, key, value) in cases {
            let err = parse(json).unwrap_err();
            assert_eq!(err.key(), Some(key), "{json}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with(key), "{msg}");
            assert!(msg.contains(value), "{msg}");
        }
        let err = parse(r#"{"Backend":{"Type":"vxlan"}}"#).unwrap_err();
        assert_eq!(err.key(), Some("Network"));
        assert!(matches!(parse("[1]"), Err(NetworkConfigError::NotJson(_))));
        assert!(matches!(parse("{"), Err(NetworkConfigError::NotJson(_))));
    }
}
