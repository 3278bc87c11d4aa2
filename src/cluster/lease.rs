//! One node's subnet lease: its key under `<prefix>/subnets/` and its JSON value, in
//! flanneld's exact format.
//!
//! Key: the subnet with `-` before the prefix length, `10.244.1.0-24` (flannel's
//! `MakeSubnetKey`; a dual-stack lease appends `&fc00::-64`, whose IPv4 half podfwd
//! uses). Value, as flanneld's `json.Marshal(LeaseAttrs)` writes it:
//! `{"PublicIP":"10.168.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:0a"}}`;
//! host-gw leases have no `BackendData`. Parsing is Go-tolerant (keys in any case,
//! unknown keys ignored, `BackendData` null or absent); what cannot be a route is an error
//! the watcher logs and skips.

use super::network::field;
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use serde_json::Value;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// What a node publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAttrs {
    /// `PublicIP`: the node's underlay address.
    pub public_ip: Ipv4Addr,
    pub backend: LeaseBackend,
}

/// `BackendType` with its `BackendData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseBackend {
    /// `"vxlan"` with `{"VNI":1,"VtepMAC":"0e:..."}`.
    Vxlan { vni: u32, vtep_mac: MacAddr },
    /// `"host-gw"`, no backend data.
    HostGw,
    /// Any other type, kept so the caller can say why it ignores the lease (flanneld's
    /// backends ignore leases of another type too).
    Other { backend_type: String },
}

/// A lease as read from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub subnet: Ipv4Net,
    pub attrs: LeaseAttrs,
    /// The etcd lease the key is attached to (0: none, a reservation).
    pub etcd_lease: i64,
    /// The key's `mod_revision`.
    pub mod_revision: i64,
}

/// Why a key or value is not a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("key {0:?} is not a subnet key like \"10.244.1.0-24\"")]
    BadKey(String),
    #[error("value is not JSON: {0}")]
    NotJson(String),
    #[error("{key}: {value} {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("{key} is missing")]
    Missing { key: &'static str },
}

/// flannel's subnet key for `subnet`: `10.244.1.0-24`.
pub fn subnet_key(subnet: Ipv4Net) -> String {
    format!("{}-{}", subnet.addr(), subnet.prefix_len())
}

/// The subnet in the last path segment of `key` (`.../subnets/10.244.1.0-24`), as
/// flannel's `ParseSubnetKey` reads it: prefix lengths 0..=31, an optional `&<ipv6>-<len>`
/// tail (ignored). Host bits must be clear.
pub fn parse_subnet_key(key: &str) -> Result<Ipv4Net, LeaseError> {
    let bad = || LeaseError::BadKey(key.to_string());
    let last = key.rsplit('/').next().unwrap_or(key);
    let v4 = match last.split_once('&') {
        Some((v4, v6)) => {
            let (a, l) = v6.rsplit_once('-').ok_or_else(bad)?;
            let ok = !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
                && l.parse::<u8>().is_ok_and(|l| l < 128);
            if !ok {
                return Err(bad());
            }
            v4
        }
        None => last,
    };
    let (addr, len) = v4.rsplit_once('-').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 31 {
        return Err(bad()); // Go's ParseUint(_, 10, 5)
    }
    let net = Ipv4Net::new(addr, len).map_err(|_| bad())?;
    if net.trunc() != net {
        return Err(bad());
    }
    Ok(net)
}

impl LeaseAttrs {
    /// The JSON value flanneld writes for these attributes, byte for byte.
    pub fn to_json(&self) -> String {
        let mut s = format!(r#"{{"PublicIP":"{}","PublicIPv6":null"#, self.public_ip);
        match &self.backend {
            LeaseBackend::Vxlan { vni, vtep_mac } => {
                let _ = write!(
                    s,
                    r#","BackendType":"vxlan","BackendData":{{"VNI":{vni},"VtepMAC":"{vtep_mac}"}}"#
                );
            }
            LeaseBackend::HostGw => s.push_str(r#","BackendType":"host-gw""#),
            LeaseBackend::Other { backend_type } => {
                let _ = write!(
                    s,
                    r#","BackendType":{}"#,
                    Value::String(backend_type.clone())
                );
            }
        }
        s.push('}');
        s
    }

    /// Parses a lease value as flanneld nodes write it.
    pub fn parse(json: &[u8]) -> Result<LeaseAttrs, LeaseError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| LeaseError::NotJson(e.to_string()))?;
        let obj = doc.as_object().ok_or(LeaseError::Invalid {
            key: "value",
            value: doc.to_string(),
            why: "is not a JSON object",
        })?;
        let ip = field(obj, "PublicIP")
            .filter(|v| !v.is_null())
            .ok_or(LeaseError::Missing { key: "PublicIP" })?;
        let public_ip: Ipv4Addr =
            ip.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| LeaseError::Invalid {
                    key: "PublicIP",
                    value: ip.to_string(),
                    why: "is not an IPv4 address",
                })?;
        let ty = match field(obj, "BackendType").filter(|v| !v.is_null()) {
            None => String::new(),
            Some(v) => v
                .as_str()
                .ok_or_else(|| LeaseError::Invalid {
                    key: "BackendType",
                    value: v.to_string(),
                    why: "is not a string",
                })?
                .to_string(),
        };
        let backend = match ty.as_str() {
            "vxlan" => {
                let data = field(obj, "BackendData")
                    .filter(|v| !v.is_null())
                    .ok_or(LeaseError::Missing { key: "BackendData" })?;
                let data = data.as_object().ok_or_else(|| LeaseError::Invalid {
                    key: "BackendData",
                    value: data.to_string(),
                    why: "is not a JSON object",
                })?;
                let vni = field(data, "VNI")
                    .ok_or(LeaseError::Missing {
                        key: "BackendData.VNI",
                    })
                    .and_then(|v| {
                        v.as_u64()
                            .filter(|&n| n < 1 << 24)
                            .ok_or_else(|| LeaseError::Invalid {
                                key: "BackendData.VNI",
                                value: v.to_string(),
                                why: "is not a 24-bit VNI",
                            })
                    })? as u32;
                let mac =
                    field(data, "VtepMAC")
                        .filter(|v| !v.is_null())
                        .ok_or(LeaseError::Missing {
                            key: "BackendData.VtepMAC",
                        })?;
                let vtep_mac =
                    mac.as_str()
                        .and_then(parse_go_mac)
                        .ok_or_else(|| LeaseError::Invalid {
                            key: "BackendData.VtepMAC",
                            value: mac.to_string(),
                            why: "is not a MAC address",
                        })?;
                LeaseBackend::Vxlan { vni, vtep_mac }
            }
            "host-gw" => LeaseBackend::HostGw,
            _ => LeaseBackend::Other { backend_type: ty },
        };
        Ok(LeaseAttrs { public_ip, backend })
    }
}

/// A 48-bit MAC in the spellings Go's `net.ParseMAC` accepts: `0e:00:..`, `0e-00-..`,
/// `0e00.0000.000a`.
fn parse_go_mac(s: &str) -> Option<MacAddr> {
    let mut out = [0u8; 6];
    let hex = |p: &str| (p.len() == 2).then(|| u8::from_str_radix(p, 16).ok())?;
    for sep in [':', '-'] {
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.len() == 6 {
            for (o, p) in out.iter_mut().zip(parts) {
                *o = hex(p)?;
            }
            return Some(MacAddr(out));
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| p.len() == 4) {
        for (i, p) in parts.iter().enumerate() {
            out[2 * i] = hex(&p[..2])?;
            out[2 * i + 1] = hex(&p[2..])?;
        }
        return Some(MacAddr(out));
    }
    None
}

impl Lease {
    /// A lease from an etcd key and value.
    pub fn from_kv(
        key: &str,
        value: &[u8],
        etcd_lease: i64,
        mod_revision: i64,
    ) -> Result<Lease, LeaseError> {
        Ok(Lease {
            subnet: parse_subnet_key(key)?,
            attrs: LeaseAttrs::parse(value)?,
            etcd_lease,
            mod_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What flanneld v0.26 stores for a vxlan node (`etcdctl get --print-value-only`).
    const FLANNELD_VXLAN: &[u8] = br#"{"PublicIP":"10.168.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:3c:5a:11:22:33"}}"#;
    /// What flanneld stores for a host-gw node: no BackendData (omitempty).
    const FLANNELD_HOST_GW: &[u8] =
        br#"{"PublicIP":"10.168.0.3","PublicIPv6":null,"BackendType":"host-gw"}"#;
    /// A dual-stack flanneld node: IPv6 fields filled, BackendV6Data present.
    const FLANNELD_DUAL: &[u8] = br#"{"PublicIP":"10.168.0.4","PublicIPv6":"fc00::4","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"52:54:00:aa:bb:cc"},"BackendV6Data":{"VNI":1,"VtepMAC":"52:54:00:aa:bb:cd"}}"#;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn vxlan_lease_round_trips_byte_for_byte() {
        let attrs = LeaseAttrs::parse(FLANNELD_VXLAN).unwrap();
        assert_eq!(
            attrs,
            LeaseAttrs {
                public_ip: Ipv4Addr::new(10, 168, 0, 2),
                backend: LeaseBackend::Vxlan {
                    vni: 1,
                    vtep_mac: mac("0e:3c:5a:11:22:33")
                }
            }
        );
        assert_eq!(attrs.to_json().as_bytes(), FLANNELD_VXLAN);
    }

    #[test]
    fn host_gw_lease_round_trips_byte_for_byte() {
        let attrs = LeaseAttrs::parse(FLANNELD_HOST_GW).unwrap();
        assert_eq!(attrs.backend, LeaseBackend::HostGw);
        assert_eq!(attrs.to_json().as_bytes(), FLANNELD_HOST_GW);
        let null_data = br#"{"PublicIP":"10.168.0.3","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}"#;
        assert_eq!(LeaseAttrs::parse(null_data).unwrap(), attrs);
    }

    #[test]
    fn dual_stack_and_odd_spellings_are_read_like_go() {
        let attrs = LeaseAttrs::parse(FLANNELD_DUAL).unwrap();
        assert_eq!(attrs.public_ip, Ipv4Addr::new(10, 168, 0, 4));
        let odd = br#"{"publicip":"10.168.0.5","backendtype":"vxlan","backenddata":{"vni":7,"vtepmac":"0E-00-00-00-00-0B"},"Extra":1}"#;
        let attrs = LeaseAttrs::parse(odd).unwrap();
        assert_eq!(
            attrs.backend,
            LeaseBackend::Vxlan {
                vni: 7,
                vtep_mac: mac("0e:00:00:00:00:0b")
            }
        );
        let other = br#"{"PublicIP":"10.168.0.6","BackendType":"wireguard","BackendData":{"PublicKey":"x"}}"#;
        assert_eq!(
            LeaseAttrs::parse(other).unwrap().backend,
            LeaseBackend::Other {
                backend_type: "wireguard".into()
            }
        );
    }

    #[test]
    fn malformed_values_name_the_key() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "not JSON"),
            (br#"{"PublicIPv6":null,"BackendType":"host-gw"}"#, "PublicIP is missing"),
            (br#"{"PublicIP":"10.168.0.300","BackendType":"host-gw"}"#, "PublicIP: \"10.168.0.300\""),
            (br#"{"PublicIP":"10.168.0.2","BackendType":"vxlan"}"#, "BackendData is missing"),
            (br#"{"PublicIP":"10.168.0.2","BackendType":"vxlan","BackendData":{"VNI":1}}"#, "BackendData.VtepMAC is missing"),
            (br#"{"PublicIP":"10.168.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00"}}"#, "BackendData.VtepMAC: \"0e:00\""),
        ];
        for (json, want) in cases {
            let err = LeaseAttrs::parse(json).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }

    #[test]
    fn subnet_keys_as_flannel_names_them() {
        let sn: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        assert_eq!(subnet_key(sn), "10.244.1.0-24");
        assert_eq!(
            parse_subnet_key("/coreos.com/network/subnets/10.244.1.0-24"),
            Ok(sn)
        );
        assert_eq!(parse_subnet_key("10.244.1.0-24&fc00:0:0:1::-64"), Ok(sn));
        for bad in [
            "/coreos.com/network/subnets/10.244.1.0",
            "/coreos.com/network/subnets/10.244.1.0-32",
            "/coreos.com/network/subnets/10.244.1.5-24",
            "/coreos.com/network/subnets/10.244.1.0-x",
            "/coreos.com/network/subnets/10.244.1-24",
            "/coreos.com/network/subnets/10.244.1.0-24&zz-64",
        ] {
            assert!(parse_subnet_key(bad).is_err(), "{bad}");
        }
    }
}
