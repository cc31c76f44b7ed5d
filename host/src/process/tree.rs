//! The spawn quota of a process tree: the processes one connection's
//! process added by `spawn`, counted against its root.
//!
//! Every process the host starts for a connection (or an HTTP request) is
//! the root of a tree; a process it spawns, and any that one spawns, joins
//! the same tree, so nesting cannot multiply the quota. A member counts while
//! it lives: an orphan (its parent ended) runs on to its own end and counts
//! until then. A listener-mode app's own process stands for no connection:
//! each process it spawns (one per accepted client) roots a tree of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The live spawned processes of one tree.
#[derive(Debug)]
struct Tree {
    /// Most spawned processes alive at once (`max_children`).
    max: usize,
    /// Spawned processes alive now (the root not counted); `live <= max`.
    live: AtomicUsize,
}

/// A process's place in its tree: its ticket to spawn, and, for a spawned
/// process, its share of the tree's count, given back when dropped (when
/// the process's store is).
#[derive(Debug)]
pub struct TreeMember {
    tree: Arc<Tree>,
    /// Whether this member is counted in `tree.live` (a spawned one).
    counted: bool,
    /// Whether the processes this one spawns root new trees (a listener-mode
    /// app's own process).
    spawns_roots: bool,
}

impl TreeMember {
    /// The root of a new tree whose members may number `max_children`.
    pub fn root(max_children: usize) -> TreeMember {
        TreeMember {
            tree: Arc::new(Tree {
                max: max_children,
                live: AtomicUsize::new(0),
            }),
            counted: false,
            spawns_roots: false,
        }
    }

    /// A root whose children each root a tree of their own.
    pub fn listener_root(max_children: usize) -> TreeMember {
        let mut root = TreeMember::root(max_children);
        root.spawns_roots = true;
        root
    }

    /// The place of a process this one spawns, or `None` when the tree has
    /// `max_children` live spawned processes.
    pub fn spawn(&self) -> Option<TreeMember> {
        if self.spawns_roots {
            return Some(TreeMember::root(self.tree.max));
        }
        self.tree
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.tree.max).then_some(live + 1)
            })
            .ok()?;
        Some(TreeMember {
            tree: Arc::clone(&self.tree),
            counted: true,
            spawns_roots: false,
        })
    }

    /// Live spawned processes in this tree.
    pub fn live(&self) -> usize {
        self.tree.live.load(Ordering::Acquire)
    }
}

impl Drop for TreeMember {
    fn drop(&mut self) {
        if self.counted {
            self.tree.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_and_grandchildren_share_the_quota() {
        let root = TreeMember::root(3);
        let child = root.spawn().unwrap();
        let grandchild = child.spawn().unwrap();
        let second = root.spawn().unwrap();
        assert_eq!(root.live(), 3);
        assert!(grandchild.spawn().is_none());
        assert!(root.spawn().is_none());
        drop(second);
        assert!(grandchild.spawn().is_some(), "a place came back");
    }

    #[test]
    fn orphans_count_until_they_end() {
        let root = TreeMember::root(2);
        let parent = root.spawn().unwrap();
        let orphan = parent.spawn().unwrap();
        drop(parent);
        assert_eq!(root.live(), 1, "the orphan still counts");
        drop(orphan);
        assert_eq!(root.live(), 0);
    }

    #[test]
    fn a_listener_roots_a_tree_per_child() {
        let listener = TreeMember::listener_root(1);
        let clients: Vec<TreeMember> = (0..5).map(|_| listener.spawn().unwrap()).collect();
        for client in &clients {
            let helper = client.spawn().unwrap();
            assert!(client.spawn().is_none(), "each client has its own quota");
            assert!(helper.spawn().is_none());
        }
        assert_eq!(listener.live(), 0);
    }

    #[test]
    fn no_children_with_a_quota_of_zero() {
        assert!(TreeMember::root(0).spawn().is_none());
    }
}
