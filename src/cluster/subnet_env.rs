//! `/run/flannel/subnet.env`, the file the flannel CNI plugin reads, written as flanneld
//! writes it (`WriteSubnetFile`): the network, this node's first pod address with the
//! subnet's length, the MTU and the masquerade flag, one `KEY=value` per line.
//!
//! The file is replaced atomically (write a temporary file in the same directory, fsync,
//! rename) with mode 0644 whatever the umask, as flanneld's `renameio.WriteFile` does; a
//! missing directory is created. flanneld also reads `FLANNEL_SUBNET` back at start to
//! ask for the same subnet again: [`previous_subnet`].

use ipnet::Ipv4Net;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The text flanneld writes for an IPv4 network.
pub fn render(network: Ipv4Net, subnet: Ipv4Net, mtu: u32, ip_masq: bool) -> String {
    // flanneld writes the subnet's first usable address: 10.244.1.0/24 -> 10.244.1.1/24.
    let first = Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1));
    format!(
        "FLANNEL_NETWORK={network}\nFLANNEL_SUBNET={first}/{}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={ip_masq}\n",
        subnet.prefix_len()
    )
}

/// Writes `render(...)` to `path` atomically.
pub fn write(
    path: &Path,
    network: Ipv4Net,
    subnet: Ipv4Net,
    mtu: u32,
    ip_masq: bool,
) -> io::Result<()> {
    let text = render(network, subnet, mtu, ip_masq);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "subnet_file has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        // The umask may have narrowed the mode; the CNI plugin must be able to read it.
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `FLANNEL_SUBNET` of an existing file, as the network (`10.244.1.1/24` ->
/// `10.244.1.0/24`); `None` when the file or the key is missing or unreadable.
pub fn previous_subnet(path: &Path) -> Option<Ipv4Net> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some(v) = line.strip_prefix("FLANNEL_SUBNET=") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if v.contains(',') {
                return None; // flanneld: more than one entry is an error, no previous subnet
            }
            found = v.parse::<Ipv4Net>().ok().map(|n| n.trunc());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_flanneld_s() {
        let text = render(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.1.0/24".parse().unwrap(),
            1450,
            false,
        );
        assert_eq!(
            text,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let text = render(
            "10.1.0.0/26".parse().unwrap(),
            "10.1.0.16/28".parse().unwrap(),
            1500,
            true,
        );
        assert_eq!(
            text,
            "FLANNEL_NETWORK=10.1.0.0/26\nFLANNEL_SUBNET=10.1.0.17/28\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn write_creates_the_directory_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("podfwd-subnet-env-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("run/flannel/subnet.env");
        let sn: Ipv4Net = "10.244.7.0/24".parse().unwrap();
        write(&path, "10.244.0.0/16".parse().unwrap(), sn, 1450, false).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("FLANNEL_SUBNET=10.244.7.1/24\n"));
        assert_eq!(previous_subnet(&path), Some(sn));
        // Only the file itself is left behind, no temporary.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(previous_subnet(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
