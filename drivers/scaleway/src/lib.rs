//! A typed, blocking client for the Scaleway APIs one-scaleway uses:
//! flexible IPs, Elastic Metal (v1, and v3 private networks), VPC v2, Public
//! Gateway v2, IPAM v1 and IAM SSH keys.
//!
//! - [`config::resolve`] finds credentials, project, zone and API URL
//!   (environment, then the Scaleway config file and its profiles);
//! - [`Client`] sends requests with the secret key in `X-Auth-Token` (a
//!   [`SecretKey`] never prints itself), retries what is safe to retry,
//!   paginates every list to the end, and creates resources through
//!   [`Client::create_reconciled`], so an ambiguous failure never buys a
//!   second server or flexible IP;
//! - errors are [`Error`]s, API answers [`ApiError`]s with the standard
//!   body's type and fields, and the irregular shapes the API really sends;
//! - waiters poll asynchronous transitions and time out naming the resource
//!   and the state it was stuck in.
//!
//! Point it at the emulator by setting `SCW_API_URL`.

pub mod baremetal;
pub mod client;
pub mod config;
pub mod config_file;
pub mod error;
pub mod flexible_ip;
pub mod iam;
pub mod ownership;
pub mod secret;
mod status;
pub mod tuning;
pub mod vpc;
pub mod vpcgw;
pub mod wait;
pub mod yaml;

pub use client::{Client, Options, RetryPolicy};
pub use config::{Credentials, Region, Zone, resolve};
pub use error::{ApiError, ApiErrorKind, Error, Result};
pub use secret::SecretKey;
pub use tuning::Tuning;
pub use wait::WaitPolicy;
