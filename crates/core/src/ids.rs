//! Non-secret identifiers (`key_...`, `svc_...`, `ups_...`, `tok_...`): what logs,
//! metrics, audit entries and the API use to name things.

use crate::base62;

pub const ID_RANDOM_LEN: usize = 16;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", base62::random(ID_RANDOM_LEN))
}

pub fn key_id() -> String {
    new_id("key")
}
pub fn service_id() -> String {
    new_id("svc")
}
pub fn upstream_id() -> String {
    new_id("ups")
}
pub fn token_id() -> String {
    new_id("tok")
}
pub fn request_id() -> String {
    new_id("kwreq")
}
