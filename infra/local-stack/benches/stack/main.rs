//! The local stack's benchmarks, one binary: each runs the whole service
//! on one machine against the local AWS emulator.
//!
//! `infra/with-emulator.sh cargo bench -p local-stack --bench stack -- NAME`
//! with NAME one of `latency`, `cost`, `frontier`, `heavy_tenant`, `recovery` (the
//! `make bench-*` targets name them). What each measures is at the top of
//! its module.

mod cost;
mod frontier;
mod heavy_tenant;
mod latency;
mod recovery;
mod workload;

fn main() {
    // `cargo bench` adds `--bench`; the benchmark is the first other word.
    let name = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    match name.as_deref() {
        Some("latency") => latency::bench(),
        Some("cost") => cost::bench(),
        Some("frontier") => frontier::bench(),
        Some("heavy_tenant") => heavy_tenant::bench(),
        Some("recovery") => recovery::bench(),
        other => {
            eprintln!(
                "which benchmark? {other:?}: cargo bench -p local-stack --bench stack -- latency|cost|frontier|heavy_tenant|recovery"
            );
            std::process::exit(2);
        }
    }
}
