pub mod fakes;
pub mod mock;
