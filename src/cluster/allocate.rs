//! Owning a subnet, by flanneld's rules (`LocalManager.tryAcquireLease`):
//!
//! 1. A lease that carries this node's `PublicIP` and fits the network config is reused:
//!    its value is rewritten and attached to a fresh etcd lease (flanneld's
//!    `updateSubnet`). One that no longer fits (SubnetLen or range changed) is deleted.
//! 2. Else the subnet of the previous run (`FLANNEL_SUBNET` in subnet.env), if it is free
//!    and fits.
//! 3. Else a random one of the first 100 free subnets in [SubnetMin, SubnetMax].
//!
//! A new subnet is created in one etcd transaction, `if version(key) == 0 then put(key,
//! attrs, lease)`, with an etcd lease of TTL 24 h: of two nodes that pick the same
//! subnet at the same instant exactly one wins; the other revokes its etcd lease, re-lists
//! and tries again (10 times, as flanneld).
//!
//! Renewal (`RenewLease`) is the same rewrite as step 1, one hour (the renew margin)
//! before the lease expires, retried every minute while etcd does not answer.

use super::lease::{Lease, LeaseAttrs};
use super::network::NetworkConfig;
use super::{ClusterError, Etcd};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use ipnet::Ipv4Net;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// flanneld's `raceRetries`.
pub const RACE_RETRIES: usize = 10;
/// flanneld's `subnetTTL`.
pub const SUBNET_TTL: Duration = Duration::from_secs(24 * 3600);
/// flanneld's default `--subnet-lease-renew-margin` (60 minutes).
pub const RENEW_MARGIN: Duration = Duration::from_secs(3600);
/// flanneld retries a failed renewal after one minute.
pub const RENEW_RETRY: Duration = Duration::from_secs(60);
/// flanneld picks among at most this many free subnets.
const CANDIDATES: usize = 100;

/// The subnet this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnLease {
    pub subnet: Ipv4Net,
    pub attrs: LeaseAttrs,
    /// The etcd lease the key is attached to; 0 for a reservation (a key written
    /// without a lease by an operator, which never expires and is never renewed).
    pub etcd_lease: i64,
    /// When etcd deletes the key unless it is renewed; `None` for a reservation.
    pub expires: Option<SystemTime>,
    /// Whether the subnet was already this node's (step 1 or 2) rather than new.
    pub reused: bool,
    /// Create transactions lost to another node (each followed by a re-list and retry).
    pub lost_races: usize,
}

/// The free subnets flanneld would choose from: the first [`CANDIDATES`] in
/// [SubnetMin, SubnetMax] that overlap no taken subnet.
pub fn free_subnets(network: &NetworkConfig, taken: &[Ipv4Net]) -> Vec<Ipv4Net> {
    network
        .subnets()
        .filter(|sn| !taken.iter().any(|t| t.contains(sn) || sn.contains(t)))
        .take(CANDIDATES)
        .collect()
}

/// A random index below `n` (n > 0). std's `RandomState` is seeded from the OS per
/// instance: enough to spread nodes over the candidates; the transaction keeps it safe.
fn random_below(n: usize) -> usize {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() % n as u64) as usize
}

/// Outcome of one create attempt.
enum Created {
    Won { etcd_lease: i64, ttl: i64 },
    Taken,
}

impl Etcd {
    /// Steps 1-3 above, retried on a lost race.
    pub(crate) async fn acquire(
        &self,
        network: &NetworkConfig,
        attrs: &LeaseAttrs,
        previous: Option<Ipv4Net>,
        ttl: Duration,
    ) -> Result<OwnLease, ClusterError> {
        for lost_races in 0..RACE_RETRIES {
            let listing = self.list_subnets().await?;
            if let Some(l) = listing
                .leases
                .iter()
                .find(|l| l.attrs.public_ip == attrs.public_ip)
            {
                if network.is_compatible(l.subnet) {
                    let ttl = (l.etcd_lease != 0).then_some(ttl);
                    let mut own = self.update(l, attrs, ttl).await?;
                    own.lost_races = lost_races;
                    return Ok(own);
                }
                tracing::warn!(
                    subnet = %l.subnet,
                    node_ip = %attrs.public_ip,
                    network = %format_args!("/{} in {}..={}", network.subnet_len, network.subnet_min, network.subnet_max),
                    "cluster: this node's lease does not fit the network config; deleting it"
                );
                self.delete(&self.subnet_path(l.subnet)).await?;
            }
            let taken = &listing.taken;
            let reuse = previous.filter(|p| network.is_compatible(*p) && !taken.contains(p));
            let (subnet, reused) = match reuse {
                Some(p) => (p, true),
                None => {
                    let free = free_subnets(network, taken);
                    if free.is_empty() {
                        return Err(ClusterError::OutOfSubnets {
                            network: network.network,
                            min: network.subnet_min,
                            max: network.subnet_max,
                        });
                    }
                    (free[random_below(free.len())], false)
                }
            };
            match self.create(subnet, attrs, ttl).await? {
                Created::Won { etcd_lease, ttl } => {
                    return Ok(OwnLease {
                        subnet,
                        attrs: attrs.clone(),
                        etcd_lease,
                        expires: Some(SystemTime::now() + Duration::from_secs(ttl as u64)),
                        reused,
                        lost_races,
                    })
                }
                Created::Taken => continue,
            }
        }
        Err(ClusterError::TooManyRaces)
    }

    /// flanneld's `createSubnet`: grant, then put only if the key does not exist.
    async fn create(
        &self,
        subnet: Ipv4Net,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<Created, ClusterError> {
        let key = self.subnet_path(subnet);
        let mut c = self.client.clone();
        let grant = self
            .call("lease grant", c.lease_grant(ttl.as_secs() as i64, None))
            .await?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                attrs.to_json(),
                Some(PutOptions::new().with_lease(grant.id())),
            )]);
        let mut c2 = self.client.clone();
        let result = self.call(&format!("create {key}"), c2.txn(txn)).await;
        match result {
            Ok(r) if r.succeeded() => Ok(Created::Won {
                etcd_lease: grant.id(),
                ttl: grant.ttl(),
            }),
            other => {
                let mut c3 = self.client.clone();
                let _ = self.call("lease revoke", c3.lease_revoke(grant.id())).await;
                other.map(|_| Created::Taken)
            }
        }
    }

    /// flanneld's `updateSubnet`: a new etcd lease (none for a reservation) and an
    /// unconditional put of this node's attributes.
    pub(crate) async fn update(
        &self,
        lease: &Lease,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<OwnLease, ClusterError> {
        let key = self.subnet_path(lease.subnet);
        let (etcd_lease, expires, opts) = match ttl {
            Some(ttl) => {
                let mut c = self.client.clone();
                let grant = self
                    .call("lease grant", c.lease_grant(ttl.as_secs() as i64, None))
                    .await?;
                (
                    grant.id(),
                    Some(SystemTime::now() + Duration::from_secs(grant.ttl() as u64)),
                    Some(PutOptions::new().with_lease(grant.id())),
                )
            }
            None => (0, None, None),
        };
        let mut c = self.client.clone();
        if let Err(e) = self
            .call(
                &format!("put {key}"),
                c.put(key.clone(), attrs.to_json(), opts),
            )
            .await
        {
            if etcd_lease != 0 {
                let mut c = self.client.clone();
                let _ = self.call("lease revoke", c.lease_revoke(etcd_lease)).await;
            }
            return Err(e);
        }
        Ok(OwnLease {
            subnet: lease.subnet,
            attrs: attrs.clone(),
            etcd_lease,
            expires,
            reused: true,
            lost_races: 0,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), ClusterError> {
        let mut c = self.client.clone();
        self.call(&format!("delete {key}"), c.delete(key, None))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnets_skip_taken_ones_and_stop_at_100() {
        let net =
            NetworkConfig::parse(br#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#)
                .unwrap();
        let taken: Vec<Ipv4Net> = ["10.244.1.0/24", "10.244.3.0/24", "10.244.4.0/23"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let free = free_subnets(&net, &taken);
        assert_eq!(free.len(), 100);
        assert_eq!(free[0], "10.244.2.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(free[1], "10.244.6.0/24".parse::<Ipv4Net>().unwrap());
        assert!(free.iter().all(|sn| net.is_compatible(*sn)));
    }

    #[test]
    fn free_subnets_respect_min_and_max() {
        let net = NetworkConfig::parse(
            br#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","SubnetMax":"10.244.12.0","Backend":{"Type":"host-gw"}}"#,
        )
        .unwrap();
        let free = free_subnets(&net, &["10.244.11.0/24".parse().unwrap()]);
        let want: Vec<Ipv4Net> = vec![
            "10.244.10.0/24".parse().unwrap(),
            "10.244.12.0/24".parse().unwrap(),
        ];
        assert_eq!(free, want);
        let all: Vec<Ipv4Net> = net.subnets().collect();
        assert!(free_subnets(&net, &all).is_empty());
    }

    #[test]
    fn random_choice_stays_in_range_and_spreads() {
        let picks: std::collections::HashSet<usize> = (0..200).map(|_| random_below(7)).collect();
        assert!(picks.iter().all(|&i| i < 7));
        assert!(picks.len() > 1, "{picks:?}");
    }
}
