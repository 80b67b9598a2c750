//! Standard Webhooks signatures per second for 1 KiB bodies on one core,
//! beside the ceiling this CPU sets: plain SHA-256 (ring) of the same signed
//! bytes (`id.timestamp.body`), which every HMAC-SHA256 signature must hash
//! (and then two more blocks).
//!
//! Then the work a delivery does on a subscription cache miss to get its
//! signing keys (`Subscription::signing_keys`): opening the sealed secret(s)
//! (AES-256-GCM) and setting up the HMAC keys, beside the same set-up from a
//! plaintext secret as items held before secrets were sealed.
//!
//! Run: `cargo bench -p shared --bench signing`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{Duration as Grace, Utc};
use shared::domain::filters::Filters;
use shared::domain::subscription::{NewSubscription, Subscription};
use shared::signing::sealed::{Keyring, StoredSecret};
use shared::signing::secret::WebhookSecret;
use shared::signing::{Signer, signature_header};

const BODY_BYTES: usize = 1024;
const ROUNDS: usize = 500_000;
const MSG_ID: &str = "evt_0123456789abcdef";

/// Runs `f` for `ROUNDS` rounds after a warm-up; returns the elapsed time.
fn timed(mut f: impl FnMut(i64)) -> Duration {
    for i in 0..10_000i64 {
        f(i);
    }
    let started = Instant::now();
    for i in 0..ROUNDS as i64 {
        f(1_795_341_600 + i);
    }
    started.elapsed()
}

fn row(label: &str, per_round: usize, elapsed: Duration) {
    let n = (ROUNDS * per_round) as f64;
    println!(
        "| {label} | {:.0} | {:.0} |",
        n / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / n
    );
}

fn main() {
    let body = vec![b'x'; BODY_BYTES];
    let one = [Signer::for_secret(&WebhookSecret::generate())];
    let two = [
        Signer::for_secret(&WebhookSecret::generate()),
        Signer::for_secret(&WebhookSecret::generate()),
    ];
    println!("| run (1 KiB body, one core) | per second | ns each |");
    println!("| --- | ---: | ---: |");
    for signers in [&one[..], &two[..]] {
        let elapsed = timed(|ts| {
            black_box(signature_header(
                black_box(signers),
                MSG_ID,
                ts,
                black_box(&body),
            ));
        });
        row(
            &format!("signatures, {} secret(s) per header", signers.len()),
            signers.len(),
            elapsed,
        );
    }
    let signed = format!("{MSG_ID}.1795341600.{}", "x".repeat(BODY_BYTES));
    let elapsed = timed(|_| {
        black_box(ring::digest::digest(
            &ring::digest::SHA256,
            black_box(signed.as_bytes()),
        ));
    });
    row(
        &format!(
            "ceiling: plain SHA-256 of the {} signed bytes",
            signed.len()
        ),
        1,
        elapsed,
    );
    cache_misses();
}

/// Signing keys of one subscription per round, as a delivery cache miss
/// builds them.
fn cache_misses() {
    let keyring = Keyring::generate();
    let now = Utc::now();
    let new = || NewSubscription {
        url: "https://example.com/hook".into(),
        description: None,
        filters: Filters::default(),
    };
    let (sealed, _) = Subscription::create("company-bench", new(), now, &keyring).expect("keyring");
    let mut rotated = sealed.clone();
    rotated
        .rotate_secret(Grace::hours(24), now, &keyring)
        .expect("keyring");
    let mut plaintext = sealed.clone();
    plaintext.secret = StoredSecret::Plaintext(WebhookSecret::generate());
    println!();
    println!("| cache miss: signing keys of one subscription | per second | ns each |");
    println!("| --- | ---: | ---: |");
    for (label, sub) in [
        (
            "plaintext secret (items before sealing): HMAC set-up only",
            &plaintext,
        ),
        ("sealed secret: AES-256-GCM open + HMAC set-up", &sealed),
        (
            "rotated: two sealed secrets opened + two HMAC set-ups",
            &rotated,
        ),
    ] {
        let elapsed = timed(|_| {
            black_box(
                black_box(sub)
                    .signing_keys(black_box(&keyring), now)
                    .expect("opens"),
            );
        });
        row(label, 1, elapsed);
    }
}
