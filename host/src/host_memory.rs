//! Host memory accounts: bytes the host buffers on a process's behalf,
//! outside its micro-heap (pipe buffers, the connection's stdio buffers).
//!
//! The micro-heap cap bounds the guest's own memory; this bounds what its
//! imports make the host hold for it. Each process has one account with the
//! app's `max_host_memory` ([`crate::config::Limits::host_memory`]); whatever
//! buffers bytes charges it before it grows and releases the charge when the
//! bytes leave. Who is charged for a pipe's bytes is `pipe.rs`'s to say (the
//! holder of its read end). An account lives as long as something charged to
//! it, so a charge can outlive the process without ever being lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One process's host-memory account.
#[derive(Debug)]
pub struct HostMemory {
    /// Most bytes [`charge_up_to`](Self::charge_up_to) lets the account hold.
    limit: u64,
    /// Bytes charged now. Only [`force`](Self::force) (bytes moving in from
    /// another account) takes it past `limit`; then nothing more is granted
    /// until enough is released.
    used: AtomicU64,
}

impl HostMemory {
    /// An empty account that grants up to `limit` bytes.
    pub fn new(limit: u64) -> Arc<HostMemory> {
        Arc::new(HostMemory {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Charges as many of `wanted` bytes as fit under the limit; returns how
    /// many (0 when the account is full).
    pub fn charge_up_to(&self, wanted: u64) -> u64 {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let granted = wanted.min(self.limit.saturating_sub(used));
            if granted == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + granted,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return granted,
                Err(actual) => used = actual,
            }
        }
    }

    /// Charges `bytes` whatever the limit: for bytes that already exist and
    /// move to this account from another.
    pub fn force(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` charged before.
    pub fn release(&self, bytes: u64) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        debug_assert!(before >= bytes, "released more than was charged");
    }

    /// Bytes a charge would be granted now.
    pub fn room(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Bytes charged now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// A charge for a transient buffer (a read buffer), given back when dropped.
#[derive(Debug)]
pub struct Charge {
    account: Arc<HostMemory>,
    bytes: u64,
}

impl Charge {
    /// Charges as many of `wanted` bytes as fit; `None` when none does.
    pub fn up_to(account: &Arc<HostMemory>, wanted: u64) -> Option<Charge> {
        match account.charge_up_to(wanted) {
            0 => None,
            bytes => Some(Charge {
                account: Arc::clone(account),
                bytes,
            }),
        }
    }

    /// The bytes charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.account.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_come_back() {
        let account = HostMemory::new(100);
        assert_eq!(account.charge_up_to(60), 60);
        assert_eq!(account.charge_up_to(60), 40, "only what fits");
        assert_eq!(account.charge_up_to(1), 0, "full");
        account.release(30);
        assert_eq!(account.used(), 70);
        assert_eq!(account.charge_up_to(50), 30);
    }

    #[test]
    fn forced_bytes_go_past_the_limit_and_block_new_charges() {
        let account = HostMemory::new(100);
        account.force(150);
        assert_eq!(account.charge_up_to(10), 0);
        account.release(60);
        assert_eq!(account.charge_up_to(100), 10);
        assert_eq!(account.used(), 100);
    }

    #[test]
    fn a_transient_charge_is_given_back_on_drop() {
        let account = HostMemory::new(64);
        let charge = Charge::up_to(&account, 100).unwrap();
        assert_eq!(charge.bytes(), 64);
        assert!(Charge::up_to(&account, 1).is_none());
        drop(charge);
        assert_eq!(account.used(), 0);
    }
}
