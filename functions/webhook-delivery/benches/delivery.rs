//! Delivery throughput (placeholder; see BENCHMARKS.md).

fn main() {}
