//! Where deliveries may go: the target-URL guard at creation, the address
//! guard at connection time, and the local allow-list.

pub mod allow_list;
pub mod ip;
pub mod url;
