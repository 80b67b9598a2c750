//! Integration tests of the dead-letter redrive, one binary: the handler
//! against the local AWS emulator, and the built binary under a Lambda
//! Runtime API.

mod lambda_smoke;
mod redrive;
