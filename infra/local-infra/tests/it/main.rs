//! Integration tests of the local infrastructure, one binary, against the
//! local AWS emulator: the receiver over real HTTP (verifying, scripted and
//! HTTPS), the job simulator and the stream reader.

mod receiver;
mod simulate;
mod stream;
