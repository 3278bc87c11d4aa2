//! Network namespaces for the demo cluster (`podfwd lab`) and the netns tests.
//!
//! Every namespace is named `pfx-<tag>-<pid>-<counter>`, unique within the machine while the
//! test process lives. [`Netns`] deletes its namespace on drop, after killing every process
//! still inside it, so a failing or panicking test (drop runs during unwinding) leaves nothing
//! behind. Processes started with [`Netns::spawn`] also get `PR_SET_PDEATHSIG(SIGKILL)`, so
//! they die with the test even when its process is killed outright (SIGKILL, abort); the
//! signal fires when the spawning *thread* exits, so use a `Netns` on the thread (test) that
//! created it. Namespaces such a killed test process left are removed by the next one:
//! [`Netns::new`] first runs [`remove_stale`].
//!
//! Nothing here touches the root namespace's links: links are created with `ip -n <ns>`,
//! and a veth pair is created with its peer directly in the other namespace.
//!
//! Tests start with [`skip_unless_root!`], which prints `SKIP: <reason>` and returns when
//! the process is not root or `ip netns` is unavailable.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Prefix of every namespace this harness creates (and of the stale ones it removes).
pub const PREFIX: &str = "pfx-";

/// Why a harness operation failed: always names the command that was run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` could not be started: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("invalid namespace tag {0:?}: use 1 to 16 characters from a-z and 0-9")]
    BadTag(String),
    #[error("could not open log file {path}: {source}")]
    Log {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Ok(())` when this process can run namespace tests, else the reason to skip them.
pub fn require_root() -> std::result::Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("needs root for network namespaces (euid {euid})"));
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip netns list` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`ip` (iproute2) is not usable: {e}")),
    }
}

/// Print `SKIP: <reason>` where the test runner does not capture it.
pub fn print_skip(reason: &str) {
    // libtest captures print!/eprint!, not direct writes: a skip must be visible.
    let _ = writeln!(io::stderr(), "SKIP: {reason}");
}

/// Return from the enclosing test, printing `SKIP: <reason>`, unless it can use namespaces.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if let Err(reason) = $crate::netns::require_root() {
            $crate::netns::print_skip(&reason);
            return;
        }
    };
}

/// A network namespace owned by a test; deleted (with everything running in it) on drop.
pub struct Netns {
    name: String,
    children: Mutex<Vec<Child>>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static STALE_SWEEP: Once = Once::new();

impl Netns {
    /// Create `pfx-<tag>-<pid>-<counter>` with its loopback up.
    pub fn new(tag: &str) -> Result<Netns> {
        if tag.is_empty()
            || tag.len() > 16
            || !tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(Error::BadTag(tag.to_string()));
        }
        STALE_SWEEP.call_once(|| {
            for name in remove_stale() {
                print_note(&format!("removed stale namespace {name}"));
            }
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{tag}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, Drop deletes the namespace even if the next step fails.
        let ns = Netns {
            name,
            children: Mutex::new(Vec::new()),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `ip netns exec NAME args...`; error unless it exits 0.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        run(&mut self.exec_command(args))
    }

    /// Run `ip netns exec NAME args...` and return its output whatever the exit status.
    pub fn exec_unchecked(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.exec_command(args);
        cmd.output().map_err(|source| Error::Spawn {
            cmd: describe(&cmd),
            source,
        })
    }

    /// Run `ip -n NAME args...` (iproute2 acting on this namespace); error unless it exits 0.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name]).args(args);
        run(&mut cmd)
    }

    /// Start `args...` in the background inside the namespace, output discarded. It is
    /// killed when the namespace is dropped. Returns its pid.
    pub fn spawn(&self, args: &[&str]) -> Result<u32> {
        self.spawn_with(args, Stdio::null(), Stdio::null())
    }

    /// Like [`Netns::spawn`], with stdout and stderr appended to the file at `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &Path) -> Result<u32> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|source| Error::Log {
                    path: log.display().to_string(),
                    source,
                })
        };
        self.spawn_with(args, open()?.into(), open()?.into())
    }

    fn spawn_with(&self, args: &[&str], stdout: Stdio, stderr: Stdio) -> Result<u32> {
        let mut cmd = self.exec_command(args);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the spawning thread, so a SIGKILLed test leaves no process behind.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: describe(&cmd),
            source,
        })?;
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(child);
        Ok(pid)
    }

    /// Kill a process started with [`Netns::spawn`] now rather than at drop.
    pub fn kill(&self, pid: u32) {
        let mut children = self
            .children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(i) = children.iter().position(|c| c.id() == pid) {
            let mut child = children.swap_remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to a process started with [`Netns::spawn`] and waits up to `grace`
    /// for it to exit, then kills it. True if it exited by itself with status 0.
    pub fn terminate(&self, pid: u32, grace: Duration) -> bool {
        let mut children = self
            .children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(i) = children.iter().position(|c| c.id() == pid) else {
            return false;
        };
        let mut child = children.swap_remove(i);
        drop(children);
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Pids of every process currently inside the namespace (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = run(Command::new("ip").args(["netns", "pids", &self.name]))?;
        Ok(parse_pids(&out.stdout))
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// Disable IPv6 and DAD on all current and future interfaces: no RS/NS/MLD noise.
    pub fn disable_ipv6(&self) -> Result<()> {
        for scope in ["all", "default"] {
            self.sysctl(&format!("net.ipv6.conf.{scope}.disable_ipv6"), "1")?;
            self.sysctl(&format!("net.ipv6.conf.{scope}.accept_dad"), "0")?;
        }
        Ok(())
    }

    /// Set an interface's MAC address.
    pub fn set_mac(&self, ifname: &str, mac: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "address", mac])
            .map(drop)
    }

    /// Add an address in CIDR notation, e.g. `10.244.0.2/24`.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", ifname]).map(drop)
    }

    /// Bring an interface up.
    pub fn link_up(&self, ifname: &str) -> Result<()> {
        self.ip(&["link", "set", "dev", ifname, "up"]).map(drop)
    }

    /// `ip route add <route...>`, e.g. `&["default", "via", "10.244.0.1"]`.
    pub fn add_route(&self, route: &[&str]) -> Result<()> {
        let mut args = vec!["route", "add"];
        args.extend_from_slice(route);
        self.ip(&args).map(drop)
    }

    /// A permanent neighbour entry: no ARP on the wire for this next hop.
    pub fn neigh_permanent(&self, ip: &str, mac: &str, ifname: &str) -> Result<()> {
        self.ip(&[
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            ifname,
            "nud",
            "permanent",
        ])
        .map(drop)
    }

    /// Whether a namespace of this name exists (`ip netns list`).
    pub fn exists(name: &str) -> bool {
        list_namespaces().iter().any(|n| n == name)
    }

    fn exec_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = std::mem::take(
            self.children
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Anything else still inside (grandchildren, daemons): the namespace would outlive
        // `ip netns del` while a process holds it.
        kill_all_inside(&self.name);
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            print_note(&format!("could not delete namespace {}: {e}", self.name));
        }
    }
}

/// Create a veth pair with one end in each namespace. The pair is created from inside
/// `a` and its peer is born directly in `b`: no end ever exists in the root namespace.
pub fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    let mut args = vec!["link", "add", a_if, "type", "veth", "peer", "name", b_if];
    if a.name != b.name {
        args.extend_from_slice(&["netns", &b.name]);
    }
    a.ip(&args).map(drop)
}

/// Delete `pfx-<tag>-<pid>-...` namespaces whose pid is no longer alive. A namespace in
/// this harness's exact format (`pfx-<tag>-<pid>-<counter>`) is ours: processes left in it
/// are killed first. Any other `pfx-` namespace (another tool's naming) is deleted only if
/// no process is inside. Returns the names removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_namespaces() {
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        if is_harness_name(&name) {
            kill_all_inside(&name);
        }
        let busy = Command::new("ip")
            .args(["netns", "pids", &name])
            .output()
            .map(|out| !parse_pids(&out.stdout).is_empty())
            .unwrap_or(true);
        if busy {
            continue;
        }
        if run(Command::new("ip").args(["netns", "del", &name])).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// The pid embedded in a harness-style name `pfx-<tag>-<pid>-<rest>`.
pub fn owner_pid(name: &str) -> Option<i32> {
    let mut parts = name.strip_prefix(PREFIX)?.splitn(3, '-');
    let _tag = parts.next()?;
    let pid: i32 = parts.next()?.parse().ok()?;
    parts.next()?;
    (pid > 0).then_some(pid)
}

/// Whether a name has exactly the form [`Netns::new`] gives: `pfx-<tag>-<pid>-<counter>`.
fn is_harness_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    parts.len() == 3
        && !parts[0].is_empty()
        && parts[0]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && digits(parts[1])
        && digits(parts[2])
}

/// Wait until `probe` returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid exists (a zombie counts).
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn kill_all_inside(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in parse_pids(&out.stdout) {
        let Ok(pid) = i32::try_from(pid) else {
            continue;
        };
        // SAFETY: plain syscall; the pid was read from this namespace's process list.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    let _ = wait_until(Duration::from_secs(2), || {
        Command::new("ip")
            .args(["netns", "pids", name])
            .output()
            .map(|out| parse_pids(&out.stdout).is_empty())
            .unwrap_or(true)
    });
}

fn list_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_pids(stdout: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Failed {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(s, " {}", arg.to_string_lossy());
    }
    s
}

fn print_note(msg: &str) {
    let _ = writeln!(io::stderr(), "netns harness: {msg}");
}
