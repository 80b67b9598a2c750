//! Standard Webhooks signatures per second for 1 KiB bodies on one core.
//!
//! Run: `cargo bench -p shared --bench signing`.

use std::hint::black_box;
use std::time::Instant;

use shared::secret::WebhookSecret;
use shared::signing::{Signer, signature_header};

const BODY_BYTES: usize = 1024;
const ROUNDS: usize = 500_000;

fn main() {
    let body = vec![b'x'; BODY_BYTES];
    let one = [Signer::for_secret(&WebhookSecret::generate())];
    let two = [
        Signer::for_secret(&WebhookSecret::generate()),
        Signer::for_secret(&WebhookSecret::generate()),
    ];
    println!("| signers per header | signatures/s (1 KiB body, one core) | ns/signature |");
    println!("| ---: | ---: | ---: |");
    for signers in [&one[..], &two[..]] {
        // Warm up, then measure.
        for i in 0..10_000i64 {
            black_box(signature_header(signers, "evt_0123456789abcdef", i, &body));
        }
        let started = Instant::now();
        for i in 0..ROUNDS as i64 {
            black_box(signature_header(
                black_box(signers),
                "evt_0123456789abcdef",
                1_795_341_600 + i,
                black_box(&body),
            ));
        }
        let elapsed = started.elapsed();
        let signatures = (ROUNDS * signers.len()) as f64;
        println!(
            "| {} | {:.0} | {:.0} |",
            signers.len(),
            signatures / elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 / signatures
        );
    }
}
