//! Spin: computes forever without blocking. The host must preempt it and end
//! it when its CPU budget runs out, without starving other processes.

use std::hint::black_box;

fn main() {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}
