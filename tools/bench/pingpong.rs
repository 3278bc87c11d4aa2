//! The latency workload: a UDP ping-pong between the two pods.
//!
//! `podfwd-bench echo` (in one pod) sends every datagram back to its sender;
//! `podfwd-bench ping` (in the other pod) sends one request at a time, paced to at most
//! `rate` per second, waits for the matching reply and records the round trip with
//! `Instant` (CLOCK_MONOTONIC). One request in flight: the forwarding node is lightly
//! loaded, so the numbers are its per-packet latency, not queueing. Both ends pin
//! themselves to one CPU and block in the kernel (no busy polling), as a pod's
//! application would. The first `warmup` replies are not recorded (ARP, caches).
//! Prints one JSON line: counts and percentiles in microseconds.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Answers until killed.
pub fn echo(bind: SocketAddr, cpu: usize) -> io::Result<()> {
    crate::gen::pin_self(cpu)?;
    let s = UdpSocket::bind(bind)?;
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = s.recv_from(&mut buf)?;
        s.send_to(&buf[..n], from)?;
    }
}

/// What the client measured.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct PingReport {
    /// Requests sent in the measured part.
    pub sent: u64,
    /// Replies matched in the measured part.
    pub received: u64,
    /// Requests without a reply within the timeout.
    pub lost: u64,
    pub secs: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// The client's parameters.
#[derive(Debug, Clone)]
pub struct PingSpec {
    pub to: SocketAddr,
    pub rate: u32,
    pub secs: f64,
    pub cpu: usize,
    pub warmup: u32,
    pub timeout: Duration,
    pub payload: usize,
}

/// Sends requests for `spec.secs` and reports the round trips.
pub fn ping(spec: &PingSpec) -> io::Result<PingReport> {
    if spec.rate == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--rate must be at least 1",
        ));
    }
    crate::gen::pin_self(spec.cpu)?;
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(spec.to)?;
    s.set_read_timeout(Some(spec.timeout))?;
    let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate));
    let mut req = vec![0u8; spec.payload.max(8)];
    let mut buf = [0u8; 2048];
    let mut rtts: Vec<u32> = Vec::with_capacity((spec.secs * f64::from(spec.rate)) as usize + 16);
    let mut rep = PingReport::default();
    let mut measuring_since: Option<Instant> = None;
    let start = Instant::now();
    let mut slot = start;
    let mut seq: u64 = 0;
    loop {
        let now = Instant::now();
        if let Some(t) = measuring_since {
            if now.duration_since(t).as_secs_f64() >= spec.secs {
                break;
            }
        } else if now.duration_since(start) > Duration::from_secs(10) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no warm-up replies from {} within 10 s", spec.to),
            ));
        }
        if slot > now {
            std::thread::sleep(slot - now);
        }
        slot += interval;
        seq += 1;
        req[..8].copy_from_slice(&seq.to_be_bytes());
        let t0 = Instant::now();
        s.send(&req)?;
        let measuring = measuring_since.is_some();
        if measuring {
            rep.sent += 1;
        }
        let got = loop {
            match s.recv(&mut buf) {
                Ok(n) if n >= 8 && buf[..8] == seq.to_be_bytes() => break Some(t0.elapsed()),
                Ok(_) => continue, // a late reply to an earlier request
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    break None
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break None,
                Err(e) => return Err(e),
            }
        };
        match (got, measuring) {
            (Some(rtt), true) => {
                rep.received += 1;
                rtts.push(rtt.as_nanos().min(u128::from(u32::MAX)) as u32);
            }
            (None, true) => rep.lost += 1,
            (Some(_), false) if seq >= u64::from(spec.warmup) => {
                measuring_since = Some(Instant::now());
                slot = Instant::now();
            }
            _ => {}
        }
    }
    rep.secs = measuring_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
    rtts.sort_unstable();
    let q = |p: f64| quantile_us(&rtts, p);
    rep.p50_us = q(0.50);
    rep.p90_us = q(0.90);
    rep.p99_us = q(0.99);
    rep.p999_us = q(0.999);
    rep.max_us = rtts.last().map_or(f64::NAN, |&n| f64::from(n) / 1e3);
    Ok(rep)
}

/// The `p` quantile (nearest rank) of sorted nanoseconds, in microseconds; NaN if empty.
pub fn quantile_us(sorted_ns: &[u32], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted_ns.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_ns.len()) - 1;
    f64::from(sorted_ns[i]) / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(quantile_us(&v, 0.5), 500.0);
        assert_eq!(quantile_us(&v, 0.99), 990.0);
        assert_eq!(quantile_us(&v, 0.999), 999.0);
        assert_eq!(quantile_us(&v[..1], 0.99), 1.0);
        assert!(quantile_us(&[], 0.5).is_nan());
    }

    #[test]
    fn ping_against_a_local_echo_measures_round_trips() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], from);
            }
        });
        let cpu = 0;
        let rep = ping(&PingSpec {
            to,
            rate: 2000,
            secs: 0.2,
            cpu,
            warmup: 10,
            timeout: Duration::from_millis(100),
            payload: 32,
        })
        .unwrap();
        assert!(rep.received > 100, "{rep:?}");
        assert_eq!(rep.lost, 0, "{rep:?}");
        assert!(rep.p50_us > 0.0 && rep.p50_us <= rep.p99_us && rep.p99_us <= rep.max_us);
    }

    #[test]
    fn ping_with_zero_rate_is_an_error() {
        let spec = PingSpec {
            to: "127.0.0.1:9".parse().unwrap(),
            rate: 0,
            secs: 0.1,
            cpu: 0,
            warmup: 0,
            timeout: Duration::from_millis(10),
            payload: 8,
        };
        assert!(ping(&spec).is_err());
    }
}
