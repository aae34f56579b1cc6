//! The use-case suites' world: `kith_test_support::world`, shared with the other suites.

#![allow(unused_imports)]

pub use kith_test_support::world::*;
