//! Integration tests of ingest, one binary: the handler and the replay of
//! ingest failures against the local AWS emulator and a real jobs stream,
//! and the built binary under a Lambda Runtime API.

mod common;
mod ingest;
mod lambda_smoke;
mod replay;
