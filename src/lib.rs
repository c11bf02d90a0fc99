//! dcm, the Distributed Cloud Manager: a declarative plan/apply engine for multi-cluster
//! Kubernetes and Istio. The binary in `main.rs` only parses the command line and calls
//! [`ops`]; every stage of the pipeline is a module here.

pub mod config;
pub mod diag;
pub mod object;
pub mod model;
pub mod compile;
pub mod graph;
pub mod target;
pub mod state;
