//! The OpenNebula side of one-scaleway's drivers.
//!
//! - [`message`]: read a driver message (base64 of an XML document) from stdin;
//! - [`xml`]: the bounded XML tree those documents are parsed into;
//! - [`attr`]: OpenNebula attributes (strings) converted into real types, with
//!   errors that name the attribute and the bad value;
//! - [`ipam`] and [`vm`]: the typed documents IPAM and network drivers receive;
//! - [`template`]: OpenNebula's template syntax (`AR = [ KEY = "value" ]`),
//!   written and parsed;
//! - [`oned`]: the few XML-RPC calls we make to oned;
//! - [`cli`]: command-line parsing through the same injectable streams;
//! - [`driver`]: the execution contract every binary follows (exit code,
//!   stdout payload, stderr error line and `INFO:`/`WARN:`/... log lines).

pub mod attr;
pub mod base64;
pub mod cli;
pub mod driver;
pub mod fsutil;
pub mod hex;
pub mod ipam;
pub mod message;
pub mod oned;
pub mod process;
pub mod ssh;
pub mod store;
pub mod template;
pub mod vm;
pub mod xml;
