//! Integration tests of the signing-secret key function, one binary.

mod custom_resource;
