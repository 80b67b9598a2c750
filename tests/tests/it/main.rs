//! Tests of the test kit itself, one binary: the metering proxy in front of
//! the emulator, the IAM audit and the template's policies, and the
//! signatures against an independent verifier.

mod aws_proxy;
mod iam_audit;
mod signing_interop;
mod template_iam;
