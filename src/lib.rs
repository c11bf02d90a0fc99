//! dcm, the Distributed Cloud Manager: a declarative plan/apply engine for multi-cluster
//! Kubernetes and Istio. The binary in `main.rs` only parses the command line and calls
//! [`ops`]; every stage of the pipeline is a module here.

pub mod apply;
pub mod cli;
pub mod compile;
pub mod config;
pub mod diag;
pub mod diff;
pub mod graph;
pub mod interrupt;
pub mod keyed;
pub mod markdown;
pub mod model;
pub mod object;
pub mod ops;
pub mod output;
pub mod ownership;
pub mod plan;
pub mod refresh;
pub mod state;
pub mod target;
#[cfg(test)]
mod testutil;
