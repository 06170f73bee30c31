//! Cinder's test harness, shared by every crate's integration tests.
//!
//! # Layout
//! - [`moto`]: moto's server (the DynamoDB and S3 wire protocol), started once per test
//!   process on a free 127.0.0.1 port, and fresh tables per test.
//! - [`conformance`]: the one suite every storage implementation must pass; the
//!   `conformance_suite!` macro turns it into tests for a given store.
//! - [`faults`]: a store wrapper that fails chosen calls (500, 503, or a write whose
//!   answer is lost), to test what a failure leaves behind.
//! - [`fixtures`]: deterministic users, key bundles and signed requests.
//! - [`router`]: driving a router in-process and reading its JSON answers.
//! - [`server`]: every function on one store over real HTTP, for client-driven tests.
//! - [`rooms`]: the spine and shards functions on both stores with a manual clock, and
//!   rooms' capabilities, for tests that sign as capabilities.
//! - [`scenarios`]: whole-product scenarios through the client, for any deployment.
//! - [`leaving`]: leaving rooms and managing them (concurrent admins, channel changes),
//!   through the client, for any deployment.
//! - [`lambda`]: a Lambda Runtime API emulator, to run a real function binary on
//!   API Gateway events.
//! - [`meter`]: a counting proxy between the functions and moto, and every shipped
//!   function behind it: requests, invocations and capacity units per API operation.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod conformance;
pub mod faults;
pub mod fixtures;
pub mod lambda;
pub mod leaving;
pub mod meter;
pub mod moto;
pub mod rooms;
pub mod router;
pub mod scenarios;
pub mod server;
