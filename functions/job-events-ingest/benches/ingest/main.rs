//! Ingest's benchmarks, one binary, against the local AWS emulator.
//!
//! `infra/with-emulator.sh cargo bench -p job-events-ingest --bench ingest -- NAME`
//! with NAME `throughput` (CPU per stream record and calls per message,
//! platform events beside job events) or
//! `load` (one heavy company's burst beside quiet ones). What each measures
//! is at the top of its module.

mod load;
mod platform;
mod run;
mod throughput;

fn main() {
    // `cargo bench` adds `--bench`; the benchmark is the first other word.
    let name = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    match name.as_deref() {
        Some("throughput") => throughput::bench(),
        Some("load") => load::bench(),
        other => {
            eprintln!(
                "which benchmark? {other:?}: cargo bench -p job-events-ingest --bench ingest -- throughput|load"
            );
            std::process::exit(2);
        }
    }
}
