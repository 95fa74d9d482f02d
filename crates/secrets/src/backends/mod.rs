//! One module per external backend. Each maps its source's answers onto the
//! classes of [`crate::FetchError`] and never puts a value into an error.

pub mod aws;
pub mod azure;
pub(crate) mod exec;
pub(crate) mod file;
pub mod gcp;
pub(crate) mod token;
pub mod vault;
