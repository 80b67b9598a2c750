//! Lambda entry point of the webhook delivery function.

fn main() {}
