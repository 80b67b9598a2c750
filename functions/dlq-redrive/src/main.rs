//! Lambda entry point of the dead-letter redrive function.

fn main() {}
