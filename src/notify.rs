//! systemd's readiness protocol (`sd_notify(3)`): one datagram of `KEY=VALUE` lines to
//! the Unix socket named by `$NOTIFY_SOCKET`, which systemd sets for a `Type=notify`
//! service. Outside systemd the variable is unset and every call is a no-op returning
//! `Ok(false)`, so callers need no "am I under systemd" check.
//!
//! `deploy/podfwd.service` is `Type=notify`: `podfwd run` calls [`ready`] once its
//! workers run (until then `systemctl start` waits), [`reloading`] and then [`ready`]
//! again around a SIGHUP reload, [`stopping`] when it begins to shut down, and [`status`]
//! for the one-line state `systemctl status` shows.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Start-up is complete (`READY=1`): systemd marks the unit active.
pub fn ready() -> io::Result<bool> {
    notify("READY=1")
}

/// A reload began (`RELOADING=1`, with `MONOTONIC_USEC` as systemd 253+ wants for
/// `Type=notify-reload`); send [`ready`] when it is done.
pub fn reloading() -> io::Result<bool> {
    notify(&reloading_state())
}

fn reloading_state() -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec())
}

/// Shutdown began (`STOPPING=1`).
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// A one-line status for `systemctl status` (`STATUS=...`). Newlines become spaces, so
/// the text cannot add assignments of its own.
pub fn status(text: &str) -> io::Result<bool> {
    notify(&status_state(text))
}

fn status_state(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

/// Sends `state` (newline-separated assignments) to `$NOTIFY_SOCKET`. `Ok(false)`: the
/// variable is unset or empty, not running under systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    match socket_from_env(std::env::var_os(NOTIFY_SOCKET)) {
        Some(socket) => notify_to(&socket, state).map(|()| true),
        None => Ok(false),
    }
}

/// The socket named by a `$NOTIFY_SOCKET` value, if any.
fn socket_from_env(value: Option<OsString>) -> Option<OsString> {
    value.filter(|v| !v.is_empty())
}

/// Sends `state` to the notification socket `socket`: a filesystem path, or an
/// abstract-namespace name written with a leading `@` (systemd's notation).
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None if bytes.starts_with(b"/") => SocketAddr::from_pathname(socket)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{NOTIFY_SOCKET}={:?} is neither an absolute path nor an abstract name (@...)",
                    socket
                ),
            ))
        }
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("{NOTIFY_SOCKET}: sent {sent} of {} bytes", state.len()),
        ));
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_socket_at_a_filesystem_path() {
        let dir = std::env::temp_dir().join(format!("podfwd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&server), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_at_sign_names_the_abstract_namespace() {
        let name = format!("podfwd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&server), "STOPPING=1");
        // Without the @ the same name is a relative path, which systemd never sets.
        let err = notify_to(OsStr::new(&name), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(&name), "{err}");
    }

    #[test]
    fn unset_or_empty_notify_socket_means_not_under_systemd() {
        assert_eq!(socket_from_env(None), None);
        assert_eq!(socket_from_env(Some(OsString::new())), None);
        assert_eq!(
            socket_from_env(Some(OsString::from("/run/systemd/notify"))),
            Some(OsString::from("/run/systemd/notify"))
        );
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_hang() {
        let err = notify_to(OsStr::new("/nonexistent/podfwd/notify.sock"), "READY=1");
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn messages_have_the_protocol_s_assignments() {
        let name = format!("podfwd-notify-msgs-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let socket = OsString::from(format!("@{name}"));
        let before = monotonic_usec();
        notify_to(&socket, &reloading_state()).unwrap();
        let msg = receive(&server);
        let usec: u64 = msg
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{msg:?}"))
            .parse()
            .unwrap();
        assert!(
            usec >= before && usec < before + 5_000_000,
            "{usec} vs {before}"
        );
        notify_to(&socket, &status_state("forwarding on eth0\nREADY=1")).unwrap();
        assert_eq!(receive(&server), "STATUS=forwarding on eth0 READY=1");
    }
}
