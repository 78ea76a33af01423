//! Connection limits shared by every TLS listener of a server: at most so many connections in
//! all and from one source address, each holding an [`Admission`] until it closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits a server applies to its connections, over all its ports together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections (handshaking or served), in all.
    pub max_connections: usize,
    /// Open connections from one source IP address.
    pub max_connections_per_address: usize,
    /// How long a client may take to complete the TLS handshake.
    pub handshake_timeout: Duration,
}

impl ConnectionLimits {
    /// The default total cap: high enough for test fan-outs and benchmarks.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
    /// The default per-address cap: many devices behind one NAT still fit.
    pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 10_000;
    /// The default handshake timeout.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: Self::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` already.
    Total,
    /// The source address holds `max_connections_per_address` already.
    PerAddress,
}

/// Counts open connections against [`ConnectionLimits`]; one per server, shared by its listeners.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limits: ConnectionLimits,
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    handshake_timeouts: AtomicU64,
}

impl ConnectionLimiter {
    /// A limiter with no connection open yet.
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        let permits = limits.max_connections.min(Semaphore::MAX_PERMITS);
        Arc::new(ConnectionLimiter {
            limits,
            total: Arc::new(Semaphore::new(permits)),
            per_address: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            handshake_timeouts: AtomicU64::new(0),
        })
    }

    /// The limits it applies.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Admits a connection from `address`, or says which cap it would exceed (and counts it).
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admission, Refusal> {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: one address either way.
        let address = address.to_canonical();
        let mut open = self.lock();
        let count = open.get(&address).copied().unwrap_or(0);
        let refusal = if count >= self.limits.max_connections_per_address {
            Err(Refusal::PerAddress)
        } else {
            Arc::clone(&self.total)
                .try_acquire_owned()
                .map_err(|_| Refusal::Total)
        };
        match refusal {
            Ok(permit) => {
                open.insert(address, count + 1);
                Ok(Admission {
                    limiter: Arc::clone(self),
                    address,
                    _permit: permit,
                })
            }
            Err(refusal) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(refusal)
            }
        }
    }

    /// Connections refused so far, for either cap.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections dropped so far because their TLS handshake took too long.
    pub fn handshake_timeouts(&self) -> u64 {
        self.handshake_timeouts.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().values().sum()
    }

    pub(crate) fn count_handshake_timeout(&self) {
        self.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map stays consistent under a panic elsewhere: each update is one statement.
        self.per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's place under the limits, given back when dropped.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<ConnectionLimiter>,
    address: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.limiter.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(total: usize, per_address: usize) -> Arc<ConnectionLimiter> {
        ConnectionLimiter::new(ConnectionLimits {
            max_connections: total,
            max_connections_per_address: per_address,
            ..ConnectionLimits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_per_address_cap_counts_each_address_and_frees_on_drop() {
        let limiter = limiter(10, 2);
        let a1 = limiter.admit(ip("10.0.0.1")).expect("first");
        let _a2 = limiter
            .admit(ip("::ffff:10.0.0.1"))
            .expect("second, same address mapped");
        assert_eq!(
            limiter.admit(ip("10.0.0.1")).err(),
            Some(Refusal::PerAddress)
        );
        let _b = limiter.admit(ip("10.0.0.2")).expect("another address");
        assert_eq!(limiter.open(), 3);
        drop(a1);
        let _a3 = limiter.admit(ip("10.0.0.1")).expect("admitted again");
        assert_eq!(limiter.refused(), 1);
    }

    #[test]
    fn the_total_cap_holds_across_addresses() {
        let limiter = limiter(2, 5);
        let a = limiter.admit(ip("10.0.0.1")).expect("first");
        let _b = limiter.admit(ip("10.0.0.2")).expect("second");
        assert_eq!(limiter.admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        // A refusal by the total cap leaves the address's count untouched.
        assert_eq!(limiter.open(), 2);
        drop(a);
        let _c = limiter.admit(ip("10.0.0.3")).expect("admitted again");
        assert_eq!(limiter.refused(), 1);
        assert_eq!(limiter.open(), 2);
    }
}
