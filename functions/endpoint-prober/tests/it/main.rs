//! Integration tests of the endpoint prober, one binary: the prober against
//! the local AWS emulator, and the built binary under a Lambda Runtime API.

mod alarms;
mod lambda_smoke;
mod prober;
