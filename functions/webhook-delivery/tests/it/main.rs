//! Integration tests of the delivery function, one binary: deliveries to
//! real loopback receivers against the local AWS emulator, and the built
//! binary under a Lambda Runtime API.

mod delivery;
mod lambda_smoke;
