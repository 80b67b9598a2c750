//! The packed form of attempts: how one item of DeliveriesTable holds
//! several attempts of one subscription, and how an invocation's attempts
//! are split into such items. See the module docs of
//! [`crate::storage::deliveries`] for the table layout.
//!
//! The `pack` attribute is a format tag byte followed by the payload:
//! [`RAW`] (the payload as it is) or [`DEFLATE`] (the payload compressed
//! with raw deflate, used when that is smaller). Any other tag is refused,
//! so a later format gets a tag of its own.
//!
//! The payload is the number of attempts, then the attempts one after the
//! other, newest first, and nothing after them. Integers are LEB128 varints (signed ones zigzag-encoded). Strings
//! are a varint `v` then, when `v` is even, `v / 2` bytes of UTF-8 (a new
//! string, numbered in the order new strings appear); when `v` is odd, the
//! string numbered `v / 2` again: event types, errors and repeated
//! response excerpts are written once per pack. One attempt:
//!
//! | field | encoding |
//! | --- | --- |
//! | head | one byte: bits 0-1 the outcome (0 delivered, 1 failed, 2 gone), bit 2 a status code follows, bit 3 an error, bit 4 a response excerpt, bit 5 an `expires_at` other than `at` + [`RETENTION`], bit 6 `at` in full |
//! | `webhook_id`, `event_type` | strings |
//! | `attempt` | varint |
//! | `at` | the pack key's milliseconds minus `at`'s (varint) and `at`'s nanoseconds within its millisecond (varint); with bit 6, unix seconds (zigzag) and nanoseconds (varint) |
//! | `status_code` | varint, with bit 2 |
//! | `error` | string, with bit 3 |
//! | `duration_ms` | varint |
//! | `response_excerpt` | string, with bit 4 |
//! | `expires_at` | zigzag, with bit 5 |
//!
//! `company_id` is the partition key, `subscription_id` the key's prefix and
//! `attempt_id` is made again from the attempt's fields
//! ([`AttemptLog::attempt_id`]); the writer refuses attempts whose
//! `attempt_id` is anything else.

use std::collections::HashMap;
use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use super::{AttemptLog, Outcome, RETENTION};

/// Format tag: the payload follows as it is.
pub const RAW: u8 = 1;
/// Format tag: the payload follows compressed with raw deflate (RFC 1951).
pub const DEFLATE: u8 = 2;

/// Largest payload a pack may unpack to: far above any pack the writer
/// makes (a DynamoDB item holds at most 400 KB), so a corrupt or hostile
/// item cannot make the reader allocate without bound.
const MAX_UNPACKED: u64 = 4 << 20;

const STATUS: u8 = 1 << 2;
const ERROR: u8 = 1 << 3;
const EXCERPT: u8 = 1 << 4;
const EXPIRES: u8 = 1 << 5;
const FULL_TIME: u8 = 1 << 6;

/// Why a pack could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attempt pack is unreadable: {0}")]
pub struct PackError(pub &'static str);

/// The milliseconds of an attempt key: the 13 digits after
/// `{subscription_id}#`.
pub fn key_millis(subscription_id: &str, key: &str) -> Option<i64> {
    let rest = key.strip_prefix(subscription_id)?.strip_prefix('#')?;
    let digits = rest.get(..13)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.as_bytes().get(13) != Some(&b'#') {
        return None;
    }
    digits.parse().ok()
}

/// The key milliseconds of an attempt (its `attempt_id`'s).
pub fn millis_of(entry: &AttemptLog) -> i64 {
    entry.at.timestamp_millis().max(0)
}

/// Whether `entry`'s `attempt_id` is the key its fields make.
pub fn has_own_key(entry: &AttemptLog) -> bool {
    entry.attempt_id
        == AttemptLog::attempt_id(
            &entry.subscription_id,
            entry.at,
            &entry.webhook_id,
            entry.attempt,
        )
}

/// Writes the payload of attempts, newest first, one at a time.
pub struct Encoder<'a> {
    /// The pack key's milliseconds (its newest attempt's).
    newest: i64,
    count: u64,
    buf: Vec<u8>,
    strings: HashMap<&'a str, u64>,
}

impl<'a> Encoder<'a> {
    /// An empty payload for a pack whose newest attempt is at `newest`
    /// key milliseconds.
    pub fn new(newest: i64) -> Self {
        Self {
            newest,
            count: 0,
            buf: Vec::with_capacity(256),
            strings: HashMap::new(),
        }
    }

    /// The attempts so far, encoded (the payload but for its count).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The payload: the count, then the attempts.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 4);
        varint(&mut out, self.count);
        out.extend_from_slice(&self.buf);
        out
    }

    /// Appends `entry`, which is no newer than the pack key.
    pub fn push(&mut self, entry: &'a AttemptLog) {
        let millis = entry.at.timestamp_millis();
        let sub_millis = entry.at.timestamp_subsec_nanos() % 1_000_000;
        let regular = millis >= 0
            && millis <= self.newest
            && entry.at.timestamp_subsec_nanos() < 1_000_000_000
            && DateTime::from_timestamp_millis(millis).and_then(|t| {
                t.checked_add_signed(chrono::Duration::nanoseconds(sub_millis.into()))
            }) == Some(entry.at);
        let mut head = match entry.outcome {
            Outcome::Delivered => 0,
            Outcome::Failed => 1,
            Outcome::Gone => 2,
        };
        if entry.status_code.is_some() {
            head |= STATUS;
        }
        if entry.error.is_some() {
            head |= ERROR;
        }
        if entry.response_excerpt.is_some() {
            head |= EXCERPT;
        }
        if Some(entry.expires_at) != default_expiry(entry.at) {
            head |= EXPIRES;
        }
        if !regular {
            head |= FULL_TIME;
        }
        self.count += 1;
        self.buf.push(head);
        self.string(&entry.webhook_id);
        self.string(&entry.event_type);
        varint(&mut self.buf, entry.attempt.into());
        if regular {
            varint(&mut self.buf, (self.newest - millis) as u64);
            varint(&mut self.buf, sub_millis.into());
        } else {
            varint(&mut self.buf, zigzag(entry.at.timestamp()));
            varint(&mut self.buf, entry.at.timestamp_subsec_nanos().into());
        }
        if let Some(status) = entry.status_code {
            varint(&mut self.buf, status.into());
        }
        if let Some(error) = &entry.error {
            self.string(error);
        }
        varint(&mut self.buf, entry.duration_ms);
        if let Some(excerpt) = &entry.response_excerpt {
            self.string(excerpt);
        }
        if head & EXPIRES != 0 {
            varint(&mut self.buf, zigzag(entry.expires_at));
        }
    }

    fn string(&mut self, s: &'a str) {
        if let Some(&n) = self.strings.get(s) {
            varint(&mut self.buf, n << 1 | 1);
        } else {
            let n = self.strings.len() as u64;
            self.strings.insert(s, n);
            varint(&mut self.buf, (s.len() as u64) << 1);
            self.buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// `(at + RETENTION)` in unix seconds, the `expires_at` of an attempt.
fn default_expiry(at: DateTime<Utc>) -> Option<i64> {
    at.checked_add_signed(RETENTION).map(|t| t.timestamp())
}

/// The `pack` attribute of `payload`: tagged, deflated when that is
/// smaller.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let deflated = deflate(payload);
    if deflated.len() < payload.len() {
        let mut out = Vec::with_capacity(1 + deflated.len());
        out.push(DEFLATE);
        out.extend_from_slice(&deflated);
        out
    } else {
        let mut out = Vec::with_capacity(1 + payload.len());
        out.push(RAW);
        out.extend_from_slice(payload);
        out
    }
}

/// `payload` compressed with raw deflate at the best ratio (packs are a
/// few KiB: it takes microseconds).
pub fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut z = DeflateEncoder::new(
        Vec::with_capacity(payload.len() / 2 + 16),
        Compression::best(),
    );
    z.write_all(payload).expect("writing to a Vec never fails");
    z.finish().expect("writing to a Vec never fails")
}

/// A running estimate of a pack's sealed size while attempts are added:
/// the payload's size, and, once that passes the limit it is held to, its
/// deflated size so far (a sync flush after each attempt, so the estimate
/// is an upper bound of what [`seal`] makes, but for a few bytes). Most
/// packs never pass the limit raw, and never start a compressor here:
/// setting one up zeroes its tables, a fifth of a delivery's CPU when
/// every pack did.
#[derive(Default)]
pub struct SizeProbe {
    /// Payload bytes given to `z` so far.
    fed: usize,
    z: Option<DeflateEncoder<Vec<u8>>>,
}

impl SizeProbe {
    /// The sealed size estimate of `payload` (the pack's payload so far:
    /// each call's extends the previous one's), exact when it is at most
    /// `limit` raw, deflated beyond.
    pub fn size(&mut self, payload: &[u8], limit: usize) -> usize {
        // The tag, and up to two bytes of count.
        let raw = 3 + payload.len();
        if raw <= limit {
            return raw;
        }
        let z = self
            .z
            .get_or_insert_with(|| DeflateEncoder::new(Vec::new(), Compression::best()));
        // A sync flush ends the deflate output at a byte; writing to a Vec
        // never fails.
        let deflated = z
            .write_all(&payload[self.fed..])
            .and_then(|()| z.flush())
            .map_or(usize::MAX, |()| z.get_ref().len() + 2);
        self.fed = payload.len();
        raw.min(3 + deflated)
    }
}

/// The attempts of a `pack` attribute whose item key is `key`, in
/// `company_id`'s partition, of `subscription_id`.
pub fn unpack(
    company_id: &str,
    subscription_id: &str,
    key: &str,
    pack: &[u8],
) -> Result<Vec<AttemptLog>, PackError> {
    let newest = key_millis(subscription_id, key).ok_or(PackError("key without milliseconds"))?;
    let payload = match pack.split_first() {
        Some((&RAW, rest)) => std::borrow::Cow::Borrowed(rest),
        Some((&DEFLATE, rest)) => {
            let mut out = Vec::with_capacity(rest.len() * 4);
            DeflateDecoder::new(rest)
                .take(MAX_UNPACKED + 1)
                .read_to_end(&mut out)
                .map_err(|_| PackError("corrupt deflate stream"))?;
            if out.len() as u64 > MAX_UNPACKED {
                return Err(PackError("unpacks past its bound"));
            }
            std::borrow::Cow::Owned(out)
        }
        Some(_) => return Err(PackError("unknown format tag")),
        None => return Err(PackError("empty")),
    };
    let mut r = Reader {
        buf: &payload,
        strings: Vec::new(),
    };
    let count = r.varint()?;
    if count == 0 {
        return Err(PackError("no attempts"));
    }
    let mut attempts = Vec::new();
    for _ in 0..count {
        attempts.push(r.attempt(company_id, subscription_id, newest)?);
    }
    if !r.buf.is_empty() {
        return Err(PackError("bytes after the last attempt"));
    }
    Ok(attempts)
}

struct Reader<'a> {
    buf: &'a [u8],
    strings: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn attempt(
        &mut self,
        company_id: &str,
        subscription_id: &str,
        newest: i64,
    ) -> Result<AttemptLog, PackError> {
        let head = self.byte()?;
        let outcome = match head & 3 {
            0 => Outcome::Delivered,
            1 => Outcome::Failed,
            2 => Outcome::Gone,
            _ => return Err(PackError("unknown outcome")),
        };
        if head & 0x80 != 0 {
            return Err(PackError("unknown head bit"));
        }
        let webhook_id = self.string()?.to_owned();
        let event_type = self.string()?.to_owned();
        let attempt = u32::try_from(self.varint()?).map_err(|_| PackError("attempt too large"))?;
        let at = if head & FULL_TIME == 0 {
            let back = i64::try_from(self.varint()?).map_err(|_| PackError("time too far back"))?;
            let sub_millis = self.varint()?;
            if sub_millis >= 1_000_000 {
                return Err(PackError("sub-millisecond nanoseconds out of range"));
            }
            DateTime::from_timestamp_millis(newest - back).and_then(|t| {
                t.checked_add_signed(chrono::Duration::nanoseconds(sub_millis as i64))
            })
        } else {
            let secs = unzigzag(self.varint()?);
            let nanos = u32::try_from(self.varint()?).map_err(|_| PackError("nanoseconds"))?;
            DateTime::from_timestamp(secs, nanos)
        }
        .ok_or(PackError("time out of range"))?;
        let status_code = if head & STATUS != 0 {
            Some(u16::try_from(self.varint()?).map_err(|_| PackError("status code"))?)
        } else {
            None
        };
        let error = if head & ERROR != 0 {
            Some(self.string()?.to_owned())
        } else {
            None
        };
        let duration_ms = self.varint()?;
        let response_excerpt = if head & EXCERPT != 0 {
            Some(self.string()?.to_owned())
        } else {
            None
        };
        let expires_at = if head & EXPIRES != 0 {
            unzigzag(self.varint()?)
        } else {
            default_expiry(at).ok_or(PackError("expiry out of range"))?
        };
        Ok(AttemptLog {
            company_id: company_id.to_owned(),
            attempt_id: AttemptLog::attempt_id(subscription_id, at, &webhook_id, attempt),
            subscription_id: subscription_id.to_owned(),
            webhook_id,
            event_type,
            attempt,
            at,
            outcome,
            status_code,
            error,
            duration_ms,
            response_excerpt,
            expires_at,
        })
    }

    fn byte(&mut self) -> Result<u8, PackError> {
        let (&b, rest) = self.buf.split_first().ok_or(PackError("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, PackError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PackError("varint too long"))
    }

    fn string(&mut self) -> Result<&'a str, PackError> {
        let v = self.varint()?;
        if v & 1 == 1 {
            let n = usize::try_from(v >> 1).map_err(|_| PackError("string reference"))?;
            return self
                .strings
                .get(n)
                .copied()
                .ok_or(PackError("string reference out of range"));
        }
        let len = usize::try_from(v >> 1).map_err(|_| PackError("string length"))?;
        if len > self.buf.len() {
            return Err(PackError("truncated string"));
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        let s = std::str::from_utf8(bytes).map_err(|_| PackError("string is not UTF-8"))?;
        self.strings.push(s);
        Ok(s)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bytes of a number attribute by DynamoDB's rule: one per two
/// significant digits, plus one.
pub fn number_size(n: i64) -> usize {
    let digits = n.unsigned_abs().to_string();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}
